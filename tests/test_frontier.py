"""`fitnets frontier`: grids, budgets, the Pareto marking, the screen and Kendall's τ, the trial queue shared by
worker processes (no trial trained twice; a killed worker's trial finished by a rerun, bit-identically), the
teacher paid once for the family, and each bad input in one line. Tiny models (defined here) on 300 examples."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from fitnets.checkpoint import load_checkpoint, save_checkpoint
from fitnets.errors import FitNetsError
from fitnets.tools.cli import main
from fitnets.tools.frontier import answer
from fitnets.tools.frontier.candidates import (
    Candidate,
    check_arguments,
    parse_candidates,
)
from fitnets.tools.frontier.facts import Budget, Facts, check_budget
from fitnets.tools.frontier.pareto import kendall_tau, pareto, pick

pytest.importorskip("optuna")

MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 4, depth: int = 1):
        super().__init__()
        layers = [nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))   # (width, 4, 4)
        self.head = nn.Linear(16 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def student(num_classes: int = 10, width: int = 4, depth: int = 1):
    return Net(num_classes, width, depth)


def teacher(num_classes: int = 10):
    return Net(num_classes, width=16, depth=2)


def broken(num_classes: int = 10):
    raise ValueError("no such net")


def flat(num_classes: int = 10):   # no map anywhere: no regressor joins it to a hint
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, num_classes))
'''

DATA = ["--train-size", "300", "--val-size", "100", "--set", "data.test_size=100", "--epochs", "2", "--no-progress",
        "--bench-batch", "8", "--bench-repeats", "1", "--no-figure"]


@pytest.fixture
def nets(tmp_path, monkeypatch, fashion_dir):
    """A package of tiny models on the path (of this process and of the workers it starts), a trained-looking
    teacher's weights, and the frontier's usual arguments."""
    package = tmp_path / "pkg" / "frontier_nets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "pkg"), os.environ.get("PYTHONPATH", "")]))
    from importlib import import_module

    torch.manual_seed(0)
    weights = tmp_path / "teacher.safetensors"
    save_checkpoint(weights, import_module("frontier_nets.models").teacher().state_dict(), {})
    yield {"teacher": f"frontier_nets.models:teacher:{weights}", "student": "frontier_nets.models:student",
           "data": ["--data-dir", str(fashion_dir), *DATA], "tmp": tmp_path}
    for name in [m for m in sys.modules if m.startswith("frontier_nets")]:
        del sys.modules[name]


def frontier_argv(nets, *words, out=None, name="f"):
    return ["frontier", "--teacher", nets["teacher"], *words, *nets["data"], "--out", str(out or nets["tmp"]),
            "--name", name]


def read(nets, name="f"):
    return json.loads((nets["tmp"] / name / "frontier.json").read_text())


# ---------------------------------------------------------------- candidates, budgets, Pareto, τ

def test_grids_expand_per_candidate_and_over_every_candidate():
    found = parse_candidates(["a.b:net", "depth=2,4", "resnet8", "in_channels=1"], ["width=8,16"])
    assert [c.args for c in found] == [{"depth": 2, "width": 8}, {"depth": 2, "width": 16}, {"depth": 4, "width": 8},
                                      {"depth": 4, "width": 16}, {"in_channels": 1, "width": 8},
                                      {"in_channels": 1, "width": 16}]
    assert found[0].label == "net(depth=2, width=8)" and found[0].slug == "net-depth=2-width=8"
    assert parse_candidates(["x.y:f", "k=0.5,true,abc"])[1].args == {"k": True}   # YAML scalars: float, bool, str
    assert len(parse_candidates(["resnet8", "resnet8"])) == 1                     # no candidate twice
    with pytest.raises(FitNetsError, match="before any candidate"):
        parse_candidates(["width=8", "a.b:net"])


def test_a_budget_says_what_each_candidate_misses_and_names_the_nearest_when_none_fits():
    teacher = Facts(1000, 10_000, 10.0, 100.0)
    fast, slow = Facts(100, 1000, 2.0, 500.0).relative_to(teacher), Facts(500, 5000, 5.0, 200.0).relative_to(teacher)
    assert (fast.speedup, fast.compression) == (5.0, 10.0)
    budget = Budget(min_speedup=3)
    assert budget.misses(fast) is None and budget.misses(slow) == "speed-up 2.00× < 3×"
    assert Budget(max_params=400).misses(slow) == "500 parameters > 400"
    check_budget(budget, {"fast": fast, "slow": slow}, {"fast": "fast", "slow": "slow"})  # one fits: no error
    with pytest.raises(FitNetsError, match=r"nearest is fast \(speed-up 5.00× < 6×\)"):
        check_budget(Budget(min_speedup=6), {"fast": fast, "slow": slow}, {"fast": "fast", "slow": "slow"})
    with pytest.raises(FitNetsError, match="--max-params must be > 0"):
        Budget(max_params=0)


def test_pareto_marks_the_undominated_rows_of_a_hand_made_table_and_the_pick_is_under_the_budget():
    #            accuracy, speed-up
    table = {"a": (0.90, 1.5), "b": (0.88, 3.0), "c": (0.87, 2.0),   # c: b is more accurate and faster
             "d": (0.80, 8.0), "e": (0.80, 6.0), "f": (0.92, 1.0)}   # e: d as accurate, faster
    assert pareto(table) == {"a", "b", "d", "f"}
    assert pick(table, 3.0) == "b" and pick(table, None) == "f" and pick(table, 9.0) is None
    rows = [{"name": k, "speedup": s, "params": 1, "results": {"kd": {"mean": acc}}} for k, (acc, s) in table.items()]
    chosen = answer.mark(rows, ["kd"], 3.0, "at ≥ 3×")
    assert [r["name"] for r in rows if r["pareto"] == ["kd"]] == ["a", "b", "d", "f"]
    assert (chosen["candidate"], chosen["method"]) == ("b", "kd")


def test_kendall_tau_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randint(0, 5, (9,), generator=gen).tolist()
        y = torch.randint(0, 5, (9,), generator=gen).tolist()
        expected = stats.kendalltau(x, y).statistic
        got = kendall_tau(x, y)
        assert (got is None and math.isnan(expected)) or abs(got - expected) < 1e-12
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0 and kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_grid_keys_and_value_types_are_checked_against_the_factory(nets):
    check_arguments(Candidate(nets["student"], {"width": 8, "depth": 2}))
    with pytest.raises(FitNetsError, match="takes no argument 'widht'.*width"):
        check_arguments(Candidate(nets["student"], {"widht": 8}))
    with pytest.raises(FitNetsError, match="width='wide' is a str, but width takes a int"):
        check_arguments(Candidate(nets["student"], {"width": "wide"}))


# ---------------------------------------------------------------- the whole command

def test_the_plan_gives_the_free_facts_and_a_student_no_regressor_joins_is_one_row(nets, capsys):
    argv = frontier_argv(nets, nets["student"], "frontier_nets.models:flat", "--methods", "fitnet,ce", "--hint",
                         "features", "--dry-run")
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert "(suggest)" in rows["student"] and "queued" in rows["student"], out
    assert "no FitNets: no layer of this student can be joined to the hint features" in rows["flat"], out
    assert "trials   3 " in out                  # fitnet and ce for the student, ce alone for the flat one
    assert not (nets["tmp"] / "f" / "trials").exists()   # a plan trains nothing

def test_a_family_trains_every_trial_once_and_a_rerun_trains_nothing(nets, capsys):
    argv = frontier_argv(nets, nets["student"], "width=2,4", "--methods", "kd,ce")
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    first = read(nets)
    rows = {c["name"]: c for c in first["candidates"]}
    assert set(rows) == {"student(width=2)", "student(width=4)"}
    for row in rows.values():
        assert row["status"] == "trained" and set(row["results"]) == {"kd", "ce"}
        assert row["params"] > 0 and row["macs"] > 0 and row["latency_ms"] > 0
        assert row["compression"] == pytest.approx(first["teacher"]["params"] / row["params"])
    assert rows["student(width=2)"]["params"] < rows["student(width=4)"]["params"]
    assert first["pick"]["candidate"] in rows
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "0 trial(s) queued" in err and "stage=main" not in err       # nothing trained again
    assert read(nets)["candidates"] == first["candidates"]              # same facts (facts.json), same results
    (nets["tmp"] / "f" / "frontier.json").unlink()
    assert main(["report", str(nets["tmp"] / "f"), "--no-figures"]) == 0  # the answer again, nothing trained
    assert "student(width=2)" in capsys.readouterr().out and read(nets)["candidates"] == first["candidates"]


def test_the_python_api_trains_names_and_objects_through_the_same_engine(nets, fashion_dir):
    from frontier_nets.models import Net, teacher

    import fitnets

    torch.manual_seed(0)
    result = fitnets.frontier(teacher(), [(nets["student"], {"width": [2, 3]}), Net(width=2, depth=2)],
                              methods="kd", data="fashion-mnist", data_dir=str(fashion_dir), train_size=300,
                              val_size=100, epochs=1, out=str(nets["tmp"]), name="py",
                              overrides={"data.test_size": 100}, figure=False)
    names = [c["name"] for c in result["candidates"]]
    assert names == ["student(width=2)", "student(width=3)", "frontier_nets.models.Net"], names
    assert all(c["status"] == "trained" and len(c["results"]["kd"]["test_acc"]) == 1 for c in result["candidates"])
    assert result == json.loads((nets["tmp"] / "py" / "frontier.json").read_text())


def test_the_teacher_is_paid_once_for_the_family(nets, tmp_path, monkeypatch, capsys):
    """Three students by KD: the family's training forwards of the teacher are one run's (the store's slots,
    filled once), plus the store's spot checks (``audit_size`` images per epoch that reads stored slots); live,
    every run pays every epoch."""
    from fitnets.training.store import AUDIT_SHARE, audit_size

    def training_images(name, *flags, students=("width=2,4,8",), store="store"):
        monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / store))
        argv = frontier_argv(nets, nets["student"], *students, "--methods", "kd", *flags, name=name)
        assert main(argv) == 0, capsys.readouterr().err[-2000:]
        trials = (tmp_path / name / "trials").glob("*/kd-seed0/trial.json")
        return [json.loads(p.read_text())["teacher_images"]["training"] for p in sorted(trials)]

    one = training_images("one", students=("width=2",), store="store-one")
    family = training_images("family")
    live = training_images("live", "--set", "store.enabled=false", "--set", "teacher_cache=false", store="store-live")
    assert len(family) == len(live) == 3 and one[0] >= 300
    checks = audit_size(AUDIT_SHARE)
    assert one[0] <= sum(family) <= one[0] + 2 * 2 * checks   # one run's, plus the two later runs' spot checks
    assert sum(live) == 3 * 2 * 300                       # 3 runs × 2 epochs × 300 examples, every one live


def test_trials_sample_the_factorys_keyword_space_with_two_objectives(nets, capsys):
    argv = frontier_argv(nets, nets["student"], "--grid", "width=1,2,3,4", "--grid", "depth=1,2", "--trials", "3",
                         "--methods", "kd")
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    result = read(nets)
    import optuna

    study = optuna.load_study(study_name="f", storage=f"sqlite:///{nets['tmp'] / 'f' / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]   # accuracy up, latency down
    sampled = [t for t in study.trials if "searched" in t.user_attrs]
    assert len(sampled) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in sampled)
    for t in sampled:   # each trial's values: (test accuracy, latency) of the candidate it sampled
        row = next(c for c in result["candidates"] if c["args"] == t.user_attrs["searched"]["args"])
        assert t.values == [row["results"]["kd"]["mean"], row["latency_ms"]]
    assert 1 <= len(result["candidates"]) <= 3


def test_the_screen_keeps_the_best_and_reports_kendall_tau(nets, capsys):
    argv = frontier_argv(nets, nets["student"], "width=1,2,8", "--methods", "kd", "--screen", "2", "--keep", "2")
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    result = read(nets)
    scores = {c["name"]: c["screen"] for c in result["candidates"]}
    kept = sorted(scores, key=lambda k: -scores[k])[:2]
    for c in result["candidates"]:
        assert (c["status"] == "trained") == (c["name"] in kept), c
        assert (c["status"].startswith("screened out")) == (c["name"] not in kept), c
    trained = [c for c in result["candidates"] if c["status"] == "trained"]
    assert result["screen"]["pairs"] == 2
    assert result["screen"]["tau"] == kendall_tau([c["screen"] for c in trained],
                                                  [c["results"]["kd"]["mean"] for c in trained])


KILLER = """
import os, signal, sys
from fitnets.training import engine
from fitnets.tools.cli import main

n, calls, real = int(sys.argv[1]), [0], engine.train_step


def step(*args, **kwargs):
    out = real(*args, **kwargs)
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return out


engine.train_step = step
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_workers_split_a_grid_and_a_killed_workers_trial_is_finished_bit_identically(nets):
    """Two processes on one study share out a grid, no trial trained twice. Then a worker is killed with
    SIGKILL in its trial's second epoch; a rerun of the same command takes the trial back and resumes it from its
    checkpoint, and the student equals the one the two workers trained without interruption."""
    argv = frontier_argv(nets, nets["student"], "width=2,3,4", "--methods", "kd,ce", name="shared")
    command = [sys.executable, "-m", "fitnets", *argv]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-1500:] for o in outs]
    records = [json.loads(p.read_text()) for p in (nets["tmp"] / "shared" / "trials").glob("*/*/trial.json")]
    assert len(records) == 6 and all(r["attempts"] == 1 for r in records)     # each trained once, by one worker
    assert len({r["worker"] for r in records}) == 2                            # and both workers trained some
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{nets['tmp'] / 'shared' / 'study.db'}")
    done = [(t.user_attrs["candidate"], t.user_attrs["method"], t.user_attrs["seed"]) for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(set(done)) == 6

    argv = frontier_argv(nets, nets["student"], "width=3", "--methods", "kd", name="killed")
    steps = -(-300 // 128)   # per epoch: killed in the second epoch, after its first checkpoint
    killed = subprocess.run([sys.executable, "-c", KILLER, str(steps + 1), *argv], capture_output=True, text=True,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    folder = nets["tmp"] / "killed" / "trials" / "student-width=3" / "kd-seed0"
    assert (folder / "last.safetensors").is_file() and not (folder / "results.json").exists()
    again = subprocess.run([sys.executable, "-m", "fitnets", *argv], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr[-1500:]
    assert "1 trial(s) of a worker that is gone queued again" in again.stderr
    assert "resuming stage main after epoch 1" in again.stderr
    resumed, _ = load_checkpoint(folder / "student.safetensors")
    whole, _ = load_checkpoint(nets["tmp"] / "shared" / "trials" / "student-width=3" / "kd-seed0"
                               / "student.safetensors")
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)


# ---------------------------------------------------------------- bad inputs, one line each

def one_line(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err[-1500:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err and needle in last, err[-1500:]


def test_each_bad_input_is_one_line_and_trains_nothing(nets, capsys, monkeypatch):
    s = nets["student"]
    one_line(capsys, frontier_argv(nets, "no-such-model", "--methods", "kd"), "unknown model 'no-such-model'")
    one_line(capsys, frontier_argv(nets, "frontier_nets.models:broken", "--methods", "kd"), "no such net")
    one_line(capsys, frontier_argv(nets, s, "--grid", "widht=2", "--methods", "kd"), "takes no argument 'widht'")
    one_line(capsys, frontier_argv(nets, s, "width=two", "--methods", "kd"), "width='two' is a str")
    one_line(capsys, frontier_argv(nets, s, "width=1,2", "--methods", "kd", "--max-params", "10"),
             "no candidate meets the budget (≤ 10 parameters); the nearest is student(width=1)")
    one_line(capsys, frontier_argv(nets, s, "--methods", "kd", "--storage", "postgresql://nobody@nowhere/db"),
             "cannot reach --storage postgresql://nobody@nowhere/db")
    assert main(frontier_argv(nets, s, "--methods", "kd", name="mine")) == 0
    capsys.readouterr()
    one_line(capsys, frontier_argv(nets, s, "--methods", "kd,ce", name="mine"), "is a frontier of methods ['kd']")
    smaller = frontier_argv(nets, s, "--methods", "kd", name="mine")
    smaller[smaller.index("--train-size") + 1] = "200"
    one_line(capsys, smaller, "is a frontier of data")
    other = frontier_argv(nets, s, "--methods", "kd", name="mine")
    copy = nets["tmp"] / "other-teacher.safetensors"
    copy.write_bytes((nets["tmp"] / "teacher.safetensors").read_bytes())
    other[other.index("--teacher") + 1] = f"frontier_nets.models:teacher:{copy}"
    one_line(capsys, other, "is a frontier of teacher")
    monkeypatch.setitem(sys.modules, "optuna", None)   # as if not installed
    one_line(capsys, frontier_argv(nets, s, "--methods", "kd", name="new"), "pip install 'fitnets[frontier]'")
    assert not (nets["tmp"] / "new").exists()
