"""`--fast` chooses its options by measuring them on the run's own models: the fastest candidate wins only by
more than the noise margin, the choice is cached per models and machine, resolved into the run's config before
training, and a resume reuses it without measuring. Timing is faked: no assertion here depends on real speed."""

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from fitnets.errors import FitNetsError
from fitnets.training import distributed, fast, machine
from fitnets.training.config import load_config
from fitnets.training.speed import lowered

# Seconds per call of a fake clock, by what is timed: the student's step by (channels_last, autocast), the
# teacher's forward by its dtype.
STUDENT = {(False, None): 1.0, (False, torch.bfloat16): 0.5, (True, None): 1.2, (True, torch.bfloat16): 0.9}
TEACHER = {None: 1.0, torch.bfloat16: 0.8}


class FakeTime:
    """A clock that advances only when a step or forward is timed, by the cost of the options it runs with."""

    def __init__(self, monkeypatch, student=STUDENT, teacher=TEACHER):
        self.now, self.steps = 0.0, []
        real_teacher_runner = fast._teacher_runner

        def train_step(step_fn, optimizer, batch, epoch, inputs, autocast):  # the engine's, as the tuner calls it
            self.steps.append((inputs.channels_last, autocast))
            self.now += student[(inputs.channels_last, autocast)]

        def teacher_runner(config, module, x, options):  # one forward of the teacher wrapped with options
            forward = real_teacher_runner(config, module, x, options)

            def timed():
                self.now += teacher[lowered(options["teacher_dtype"])]
                return forward()
            return timed

        monkeypatch.setattr(fast, "train_step", train_step)
        monkeypatch.setattr(fast, "_teacher_runner", teacher_runner)

    def __call__(self) -> float:
        return self.now


def tune(tiny, tmp_path, clock, overrides=(), retune=False, teacher=True):
    config = load_config(None, fast.fast_overrides(True) + list(overrides))
    return fast.tune(config, tiny(width=8), tiny(width=16) if teacher else None, torch.rand(4, 1, 8, 8), 10,
                     retune=retune, clock=clock, cache=tmp_path / "fast.json")


def test_the_fastest_candidate_is_chosen_through_the_engines_step(tiny, tmp_path, monkeypatch):
    clock = FakeTime(monkeypatch)
    choice = tune(tiny, tmp_path, clock)
    assert choice.options == {"channels_last": False, "student_dtype": "bfloat16", "teacher_dtype": "bfloat16"}
    assert choice.speedups == {"student": pytest.approx(2.0), "teacher": pytest.approx(1.25)}
    assert set(clock.steps) == set(STUDENT)  # every candidate went through train_step
    assert "student bf16 autocast, contiguous (2.00× the defaults); teacher bf16 (1.25× the defaults)" in \
        choice.describe()


def test_never_a_candidate_within_the_noise_margin_of_the_defaults(tiny, tmp_path, monkeypatch):
    near = {key: 0.97 for key in STUDENT} | {(False, None): 1.0}  # 3% faster: noise, not a gain
    choice = tune(tiny, tmp_path, FakeTime(monkeypatch, student=near, teacher={None: 1.0, torch.bfloat16: 1.5}))
    assert choice.options == {"channels_last": False, "student_dtype": "float32", "teacher_dtype": "float32"}
    assert choice.speedups == {"student": 1.0, "teacher": 1.0}
    assert fast.pick({"defaults": [1.0, 1.0, 1.0], "x": [0.5, 2.0, 2.0]}, "defaults")[0] == "defaults"  # by median


def test_keys_given_explicitly_are_left_as_set(tiny, tmp_path, monkeypatch):
    clock = FakeTime(monkeypatch)
    choice = tune(tiny, tmp_path, clock, [("student_dtype", "float32"), ("fast.keep", ["student_dtype"])])
    assert set(clock.steps) == {(False, None), (True, None)}  # only channels_last was measured
    assert choice.options["student_dtype"] == "float32" and choice.options["channels_last"] is False


def test_the_cache_skips_measuring_retune_measures_again_a_damaged_cache_is_measured_over(tiny, tmp_path, monkeypatch,
                                                                                         caplog):
    clock = FakeTime(monkeypatch)
    first = tune(tiny, tmp_path, clock)
    measured = len(clock.steps)
    again = tune(tiny, tmp_path, clock)
    assert len(clock.steps) == measured and again.cached and again.options == first.options
    assert "cached choice" in again.describe()
    tune(tiny, tmp_path, clock, retune=True)
    assert len(clock.steps) == 2 * measured
    tune(tiny, tmp_path, clock, [("optim.name", "sgd")])  # another step to time: another key
    assert len(clock.steps) == 3 * measured
    (tmp_path / "fast.json").write_text('{"entries": {"abc": ')  # cut short, as by a full disk
    damaged = tune(tiny, tmp_path, clock)
    assert len(clock.steps) == 4 * measured and damaged.options == first.options
    assert "unreadable" in caplog.text
    assert len(json.loads((tmp_path / "fast.json").read_text())["entries"]) == 2  # rewritten whole


@pytest.mark.parametrize("damage", [[], {"speedup": 1.0, "rates": {"fp32": 1.0}},
                                    {"options": {"student_dtype": "float16"}, "speedup": 1.0, "rates": {"x": 1.0}},
                                    {"options": {}, "speedup": "fast", "rates": {"x": 1.0}}])
def test_a_damaged_cache_entry_is_measured_again_with_a_warning(tiny, tmp_path, monkeypatch, caplog, damage):
    """An entry that is not an object, lacks its options, names a dtype --fast never chooses, or has no speed-up:
    ignored with a warning, that part measured again and its entry written over (issue 27)."""
    clock = FakeTime(monkeypatch)
    first = tune(tiny, tmp_path, clock)
    measured = len(clock.steps)
    path = tmp_path / "fast.json"
    entries = json.loads(path.read_text())["entries"]
    entries = {key: damage for key in entries}
    path.write_text(json.dumps({"format": 1, "entries": entries}))
    again = tune(tiny, tmp_path, clock)
    assert len(clock.steps) == 2 * measured and again.options == first.options and not again.cached
    assert "damaged entry" in caplog.text
    assert all(e != damage for e in json.loads(path.read_text())["entries"].values())  # written over


def test_measuring_leaves_the_random_state_and_the_models_alone(tiny, tmp_path):
    torch.manual_seed(1)
    student = tiny(width=8)
    weights = {k: v.clone() for k, v in student.state_dict().items()}
    x = torch.rand(4, 1, 8, 8)
    state = torch.get_rng_state()
    config = load_config(None, fast.fast_overrides(True))
    fast.tune(config, student, None, x, 10, cache=tmp_path / "fast.json")
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, weights[k]) for k, v in student.state_dict().items())


def test_fast_becomes_overrides_under_what_is_given(monkeypatch):
    assert fast.fast_overrides(None) == [] and fast.fast_overrides(False) == []
    pairs = dict(fast.fast_overrides("retune", ["compile", "optim.lr"]))
    assert pairs["fast.mode"] == "retune" and pairs["fast.keep"] == ["compile"] and pairs["cache_dtype"] == "bfloat16"
    with pytest.raises(FitNetsError, match="bad --fast value 'quick'"):
        fast.fast_overrides("quick")
    from fitnets import api

    config = api._config("distill", None, {"student_dtype": "float32"}, {"fast": True, "compile": False}, [], None)
    assert config.fast.mode == "tune" and config.fast.keep == ["student_dtype", "compile"]


def test_rank_0s_choice_reaches_every_rank(monkeypatch):
    """Under torchrun rank 0 measures and broadcasts; another rank only receives (here: a world of two)."""
    sent = []
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(rank=1, world_size=2))
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", lambda box, src: sent.append(src) or
                        box.__setitem__(0, fast.Choice(options={"student_dtype": "bfloat16"})))
    monkeypatch.setattr(fast, "_tune", lambda *a: pytest.fail("rank 1 measured"))
    choice = fast.tune(load_config(None), torch.nn.Linear(2, 2), None, torch.rand(2, 2), 2)
    assert sent == [0] and choice.options == {"student_dtype": "bfloat16"}


ARGS = ["distill", "--method", "kd", "--train-size", "200", "--val-size", "100", "--set", "data.test_size=100",
        "--batch-size", "50", "--no-progress", "--device", "cpu"]


def test_dry_run_says_what_fast_will_do(monkeypatch, capsys, fashion_dir, tmp_path):
    from fitnets.tools.cli import main

    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path))
    assert main([*ARGS, "--fast", "--student-dtype", "float32", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fast     measures at the start (the student's step as fp32, contiguous / fp32, channels_last; " \
           "the teacher's forward as fp32 / bf16, batch 50)" in out and "compile not searched on a CPU" in out
    monkeypatch.setattr(fast, "CLOCK", FakeTime(monkeypatch))
    assert main([*ARGS, "--fast", "--student-dtype", "float32", "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert main([*ARGS, "--fast", "--student-dtype", "float32", "--dry-run"]) == 0
    assert "fast     the choice cached for these models and this machine" in capsys.readouterr().out


def test_a_resume_keeps_the_recorded_choice_and_never_measures(monkeypatch, fashion_dir, tmp_path):
    """The choice is in the run's config.yaml and checkpoint; resumed with --fast again, the run measures nothing
    and ends bit-identical to an uninterrupted --fast run."""
    from fitnets.checkpoint import read_weights
    from fitnets.tools.cli import main

    chosen = fast.Choice(options={"channels_last": True, "student_dtype": "float32", "teacher_dtype": "bfloat16"},
                         speedups={"student": 1.3, "teacher": 1.2})
    calls = []
    monkeypatch.setattr(fast, "_tune", lambda *args: calls.append(args) or chosen)
    args = [*ARGS, "--fast", "--out", str(tmp_path), "--set", "optim.schedule=constant", "--set", "kd.decay_epochs=2"]
    assert main([*args, "--epochs", "2", "--name", "whole"]) == 0
    assert main([*args, "--epochs", "1", "--name", "cut"]) == 0
    assert len(calls) == 2
    (tmp_path / "cut" / "results.json").unlink()  # as if killed after epoch 1
    monkeypatch.setattr(fast, "_tune", lambda *args: pytest.fail("a resume measured"))
    assert main(["distill", "--resume", str(tmp_path / "cut"), "--epochs", "2", "--fast", "--no-progress"]) == 0
    saved = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert saved["fast"]["mode"] == "tuned" and saved["channels_last"] and saved["teacher_dtype"] == "bfloat16"
    whole, resumed = (read_weights(tmp_path / name / "student.safetensors") for name in ("whole", "cut"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_resume_with_fast_of_a_run_made_without_it_plans_what_it_does(monkeypatch, capsys, fashion_dir, tmp_path):
    """`--resume RUN --fast` on a run made without --fast: the plan said it measures while the run did not (issue
    27); both now keep the run's recorded options."""
    from fitnets.tools.cli import main

    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    assert main([*ARGS, "--epochs", "1", "--out", str(tmp_path), "--name", "plain"]) == 0
    monkeypatch.setattr(fast, "_tune", lambda *args: pytest.fail("a resume measured"))
    capsys.readouterr()
    resume = ["distill", "--resume", str(tmp_path / "plain"), "--epochs", "2", "--fast", "--no-progress"]
    assert main([*resume, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "measures at the start" not in plan
    assert "fast     resuming with the speed options the run recorded (it did not use --fast)" in plan
    assert "speed    student float32; teacher float32, channels_last, folded BN" in plan  # the run's, not --fast's
    assert main(resume) == 0
    logged = capsys.readouterr().err  # the plan the run logs before it trains
    assert "plan:" in logged and "measures at the start" not in logged and "fast     resuming with the" in logged
    saved = yaml.safe_load((tmp_path / "plain" / "config.yaml").read_text())
    assert saved["fast"]["mode"] == "off" and saved["cache_dtype"] == "float32"


def test_a_run_measures_once_then_reads_its_choice_from_the_cache(monkeypatch, fashion_dir, tmp_path, capsys):
    from fitnets.tools.cli import main

    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    clock = FakeTime(monkeypatch)
    monkeypatch.setattr(fast, "CLOCK", clock)
    assert main([*ARGS, "--fast", "--epochs", "1", "--out", str(tmp_path), "--name", "one"]) == 0
    measured = len(clock.steps)
    assert measured and "--fast: student bf16 autocast, contiguous (2.00× the defaults)" in capsys.readouterr().err
    assert main([*ARGS, "--fast", "--epochs", "1", "--out", str(tmp_path), "--name", "two"]) == 0
    assert len(clock.steps) == measured and "cached choice" in capsys.readouterr().err
    assert main([*ARGS, "--fast=retune", "--epochs", "1", "--out", str(tmp_path), "--name", "three"]) == 0
    assert len(clock.steps) == 2 * measured
    saved = yaml.safe_load(Path(tmp_path / "two" / "config.yaml").read_text())
    assert (saved["student_dtype"], saved["teacher_dtype"], saved["fast"]["mode"]) == ("bfloat16", "bfloat16", "tuned")


def test_a_bare_fast_before_a_positional_leaves_the_positional_alone(monkeypatch, capsys, fashion_dir, tmp_path):
    """`fitnets run --fast FILE`: argparse alone would read FILE as --fast's value; a bare --fast means tune."""
    from fitnets.tools.cli import bind_optional_values, main

    assert bind_optional_values(["run", "--fast", "a.yaml"]) == ["run", "--fast=tune", "a.yaml"]
    assert bind_optional_values(["run", "a.yaml", "--fast"]) == ["run", "a.yaml", "--fast=tune"]
    assert bind_optional_values(["run", "--fast", "retune", "a.yaml"]) == ["run", "--fast", "retune", "a.yaml"]
    assert bind_optional_values(["run", "--", "--fast", "a.yaml"]) == ["run", "--", "--fast", "a.yaml"]
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path))
    config = Path(__file__).resolve().parents[1] / "configs" / "demo-fitnet.yaml"
    assert main(["run", "--fast", str(config), "--device", "cpu", "--dry-run"]) == 0
    assert "fast     measures at the start" in capsys.readouterr().out


@pytest.mark.parametrize("others, busy", [(1.2, True), (0.3, False)])
def test_timing_on_a_busy_cpu_warns_that_the_cached_choice_reflects_it(tiny, tmp_path, monkeypatch, caplog, others,
                                                                     busy):
    """Other work's cores over the timing: the machine's busy CPU seconds (faked: `others` cores over the fake
    clock's span) less this process's own."""
    clock = FakeTime(monkeypatch)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(machine, "machine_cpu_seconds", lambda: 1000.0 + others * clock.now + time.process_time())
    tune(tiny, tmp_path, clock)
    assert ("--fast: other work kept %.1f of 2 cores busy" % others in caplog.text) == busy
    caplog.clear()
    tune(tiny, tmp_path, clock)   # read from the cache: nothing is timed, nothing to warn about
    assert "busy" not in caplog.text
