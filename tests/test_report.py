import json

import yaml

from fitnets.tools.cli import main


def fake_run(folder, method, seed, acc, student="paper-mnist-fitnet", teacher="paper-mnist-teacher"):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model_args": {}}))
    results = {"method": method, "student": student, "teacher": teacher if method != "ce" else None, "seed": seed,
               "dataset": "fashion-mnist", "test_acc": acc, "stages": {"main": {"best_epoch": 2}}}
    (folder / "results.json").write_text(json.dumps(results))
    rows = [{"stage": "hint", "epoch": 1, "loss": 9.0, "hint_loss": 9.0, "val_hint_loss": 8.0}] if method == "fitnet" else []
    rows += [{"stage": "main", "epoch": e, "loss": 2.0 / e, "task_loss": 1.0 / e, "train_acc": 0.5, "val_acc": 0.6}
             for e in (1, 2, 3)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_report_table_and_figures(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"fit{s}", "fitnet", s, acc) for s, acc in enumerate((0.80, 0.82, 0.84))]
    runs += [fake_run(tmp_path / "ce0", "ce", 0, 0.75)]
    code = main(["report", *map(str, runs), "--out", str(tmp_path / "rep"), "--no-speed"])
    assert code == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    fit_row = next(line for line in text.splitlines() if "| fitnet |" in line)
    cells = [c.strip() for c in fit_row.split("|")]
    assert cells[5] == "3" and cells[6] == "82.00 ± 2.00"         # 3 seeds, mean ± sample std
    assert cells[7] == "2" and cells[8] == "3" and cells[9] == "36,226"
    assert cells[11] == f"{418_714 / 36_226:.1f}×"
    ce_row = next(line for line in text.splitlines() if "| ce |" in line)
    assert "| 75.00 |" in ce_row
    assert (tmp_path / "rep" / "tradeoff.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "curves-fit0.png").is_file()


def test_report_needs_finished_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results.json" in capsys.readouterr().err
