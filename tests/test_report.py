import json

import yaml

from fitnets.tools.cli import main


def fake_run(folder, method, seed, acc, student="paper-mnist-fitnet", teacher="paper-mnist-teacher", config=None,
             val=None, time_s=None):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config or {"model_args": {}}))
    results = {"method": method, "student": student, "teacher": teacher if method != "ce" else None, "seed": seed,
               "dataset": "fashion-mnist", "test_acc": acc, "stages": {"main": {"best_epoch": 2}}}
    if val is not None:
        results["stages"]["main"]["best_score"] = val
    if time_s is not None:
        results["train_time_s"] = time_s
    (folder / "results.json").write_text(json.dumps(results))
    rows = [{"stage": "hint", "epoch": 1, "loss": 9.0, "hint_loss": 9.0, "val_hint_loss": 8.0}] if method == "fitnet" else []
    rows += [{"stage": "main", "epoch": e, "loss": 2.0 / e, "task_loss": 1.0 / e, "train_acc": 0.5, "val_acc": 0.6}
             for e in (1, 2, 3)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_report_table_and_figures(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"fit{s}", "fitnet", s, acc, val=acc + 0.01, time_s=60.0 + 30 * s)
            for s, acc in enumerate((0.80, 0.82, 0.84))]
    runs += [fake_run(tmp_path / "ce0", "ce", 0, 0.75)]
    code = main(["report", *map(str, runs), "--out", str(tmp_path / "rep"), "--no-speed"])
    assert code == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    fit_row = next(line for line in text.splitlines() if "| fitnet |" in line)
    cells = [c.strip() for c in fit_row.split("|")]
    assert cells[5] == "3" and cells[6] == "82.00 ± 2.00"         # 3 seeds, mean ± sample std
    assert cells[7] == "83.00 ± 2.00"                               # the validation accuracy of the kept students
    assert cells[8] == "2" and cells[9] == "3" and cells[10] == "1.5 min" and cells[11] == "36,226"
    assert cells[13] == f"{418_714 / 36_226:.1f}×"
    ce_row = next(line for line in text.splitlines() if "| ce |" in line)
    assert "| 75.00 | – |" in ce_row
    assert (tmp_path / "rep" / "tradeoff.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "curves-fit0.png").is_file()


def test_report_needs_finished_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_report_by_name_keeps_configurations_of_one_method_apart(tmp_path):
    runs = [fake_run(tmp_path / f"search-{name}-seed{s}", "fitnet", s, acc)
            for name, acc in (("a", 0.80), ("b", 0.90)) for s in (0, 1)]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "one"), "--no-speed", "--no-figures"]) == 0
    rows = [line for line in (tmp_path / "one" / "report.md").read_text().splitlines() if "| fitnet |" in line]
    assert len(rows) == 1 and "| 2 (4 runs) | 85.00 ± 5.77 |" in rows[0]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "two"), "--no-speed", "--no-figures",
                 "--by-name"]) == 0
    rows = [line for line in (tmp_path / "two" / "report.md").read_text().splitlines() if "| fitnet |" in line]
    assert [r.split("|")[1].strip() for r in rows] == ["search-a", "search-b"]
    assert "| 2 | 80.00 ± 0.00 |" in rows[0] and "| 2 | 90.00 ± 0.00 |" in rows[1]


def test_report_builds_models_as_the_run_did(tmp_path):
    """A zoo pair made for 1-channel 28×28 images: the counts and the speed-up use the run's model arguments,
    its teacher's and its input shape (the registry's would be 3×32×32)."""
    config = {"model_args": {"in_channels": 1, "num_classes": 10}, "input_shape": [1, 28, 28],
              "teacher_args": {"in_channels": 1, "num_classes": 10}}
    run = fake_run(tmp_path / "r0", "kd", 0, 0.9, student="resnet8", teacher="resnet14:elsewhere", config=config)
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    row = next(line for line in (tmp_path / "rep" / "report.md").read_text().splitlines() if "| kd |" in line)
    cells = [c.strip() for c in row.split("|")]
    assert cells[4] == "resnet14"
    from fitnets.core.profile import count_macs, count_parameters
    from fitnets.models.registry import create_model

    student = create_model("resnet8", in_channels=1, num_classes=10)
    teacher = create_model("resnet14", in_channels=1, num_classes=10)
    assert cells[11] == f"{count_parameters(student):,}"
    assert cells[12] == f"{count_macs(student, (1, 28, 28)) / 1e6:.1f}M"
    assert cells[13] == f"{count_parameters(teacher) / count_parameters(student):.1f}×"
    assert cells[14].endswith("×") and float(cells[14][:-1]) > 1


def test_a_run_given_twice_counts_once(tmp_path, capsys):
    run = fake_run(tmp_path / "fit0", "fitnet", 0, 0.80)
    other = fake_run(tmp_path / "fit1", "fitnet", 1, 0.84)
    same = tmp_path / "x" / ".." / "fit0"  # the same folder by another path
    (tmp_path / "x").mkdir()
    assert main(["report", str(run), str(same), f"{run}/", str(other), "--out", str(tmp_path / "rep"),
                 "--no-speed", "--no-figures"]) == 0
    row = next(line for line in (tmp_path / "rep" / "report.md").read_text().splitlines() if "| fitnet |" in line)
    assert "| 2 | 82.00 ± 2.83 |" in row  # two runs, not four
    assert "given 3 times: counted once" in capsys.readouterr().err


def test_a_damaged_metrics_line_is_one_line_naming_file_and_line(tmp_path, capsys):
    run = fake_run(tmp_path / "fit0", "fitnet", 0, 0.80)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[2] = lines[2][:17]  # a torn row
    metrics.write_text("\n".join(lines) + "\n")
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-speed", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{metrics}, line 3" in err, err
    lines[2] = "[1, 2]"  # JSON, but not a row
    metrics.write_text("\n".join(lines) + "\n")
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-speed", "--no-figures"]) == 2
    assert f"{metrics}, line 3" in capsys.readouterr().err
