"""`fitnets bench step`: a declared list of cases, each a stage built as a run builds it and timed by the engine's
own epoch; a row is what `train_one_epoch` reports (the median over the rounds), and every ratio divides rows
measured on the same batches."""

import pytest
import torch

from fitnets.data.loader import ImageData
from fitnets.tools import bench_step as bench
from fitnets.tools.bench_step import DEFAULTS, Case, Pair, StepRow, default_cases, measure, ratios_of
from fitnets.training import recipes
from fitnets.training.steps import HintStep


def pair(tiny, tmp_path, rounds=3):
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (32,), generator=g), 10)
    return Pair(tiny(width=16), tiny(width=8), "block.0", "stem", data, data.subset(torch.arange(16)), 8, rounds,
                tmp_path)


def test_a_row_is_the_median_of_the_engines_epochs_and_compiled_cases_come_last(tiny, tmp_path, monkeypatch):
    order, calls = [], []

    def epoch(stage, step_fn, optimizer, epoch, ctx):  # the engine's epoch, as the bench calls it
        order.append(getattr(stage.step, "forward_fn", None) is not None)  # a torch.compile'd student
        calls.append(epoch)
        return {"images_per_s": {0: 1.0, 1: 100.0, 2: 400.0, 3: 200.0}[epoch], "data_wait_share": 0.25}

    def validation(rule):  # a run validates after each epoch; the bench after the warm-up one, before timing
        def validate(*args, **kwargs):
            check = rule(*args, **kwargs)
            return lambda: calls.append("validate") or check()
        return validate

    monkeypatch.setattr(bench, "train_one_epoch", epoch)
    monkeypatch.setattr(recipes, "AccuracyEval", validation(recipes.AccuracyEval))  # the recipes build the stages
    monkeypatch.setattr(bench, "HintEval", validation(bench.HintEval))
    fast = bench.Speed.of(bench.load_config(None, [("compile", True), ("channels_last", True)]))
    cases = default_cases(fast)
    rows = measure(cases, pair(tiny, tmp_path), rounds=3, warmup=1)
    assert [r.name for r in rows] == [c.name for c in cases]
    assert all(r.rates == [100.0, 400.0, 200.0] and r.images_per_s == 200.0 for r in rows)  # median, not mean/best
    assert rows[0].data_wait_share == 0.25
    # every round of the eager cases first: a compile slows the eager steps measured after it in one process
    assert order == sorted(order) and any(order) and sum(order) == 4 * sum(c.compiles for c in cases)
    assert calls.count("validate") == len(cases) and all(calls[i + 1] == "validate" for i, c in enumerate(calls)
                                                         if c == 0)


def test_every_ratio_divides_rows_on_the_same_batches():
    rate = {"ce": 1000, "kd_cached": 800, "stage1_cached": 2000, "ce_aug": 900, "kd_live_aug": 400, "kd_store": 850}
    cases = default_cases(DEFAULTS)
    rows = [StepRow(c.name, rate[c.key.removeprefix("fast_")] * (1.5 if c.key.startswith("fast_") else 1),
                    data_wait_share=0.01) for c in cases]
    ratios = ratios_of(cases, rows)
    assert ratios["kd_cached_cost"] == 1000 / 800
    assert ratios["kd_store_cost"] == 900 / 850
    assert ratios["kd_fast_store_speedup"] == pytest.approx(1.5 * 850 / 900)  # augmented over augmented


def test_stage_1_is_the_recipes_stage(tiny, tmp_path):
    p = pair(tiny, tmp_path)
    stage = p.stage(Case("FitNet stage 1", "hint", "live", DEFAULTS, "defaults"))
    fitnet = stage.step.fitnet
    assert isinstance(stage.step, HintStep) and stage.step.cut and set(stage.saves) == {"model", "regressor"}
    assert [id(w) for w in stage.optimized()] == [id(w) for w in fitnet.stage1_parameters()]
    assert "hint loss" in stage.about  # written by recipes.hint_stage


def test_the_cost_said_before_measuring_is_what_measuring_spends(tiny, tmp_path, monkeypatch):
    """`bench step` says its cost before paying it: the teacher forwards it counts are those the cases run (up to
    the store's few audit forwards and the FitNet's two-image probe of its layers), and a cache or store is filled
    once per teacher setting, for the views the timed epochs read only (not every view of every example)."""
    from fitnets.core.teacher import FrozenTeacher
    from fitnets.tools.bench_step import workload

    seen = {"images": 0}
    call, features = FrozenTeacher.__call__, FrozenTeacher.features

    def counting(fn):
        def wrapped(self, x, *args, **kwargs):
            seen["images"] += len(x)
            return fn(self, x, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(FrozenTeacher, "__call__", counting(call))
    monkeypatch.setattr(FrozenTeacher, "features", counting(features))
    p = pair(tiny, tmp_path, rounds=2)
    cases = default_cases(DEFAULTS, preset=DEFAULTS.replace(teacher_dtype="bfloat16", cache_dtype="bfloat16"))
    measure(cases, p, rounds=2, warmup=1)
    teacher, student = workload(cases, len(p.data), p.batch_size, 1, 2, len(p.val))
    assert teacher <= seen["images"] <= 1.1 * teacher
    # the store rows' fill: the views of the 2 timed epochs, 2 × 32, once per teacher setting — not 32 × 18 views
    assert teacher < 2 * 32 * 18
