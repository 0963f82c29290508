"""The hint stage's fit: R² = 1 − SSE/SST of the regressed guided features against the hint, per epoch on the
validation split, in metrics.jsonl and results.json, with a warning when stage 1 ends with a weak fit."""

import json
import logging

import pytest
import torch

from fitnets.core.fitnet import FitNet
from fitnets.data.loader import ImageData, to_float
from fitnets.training.config import load_config
from fitnets.training.evaluate import evaluate_hint
from fitnets.training.loading import Data
from fitnets.training.run import Run


def synthetic(n, seed, size=8):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), 10)


def test_r2_is_the_share_of_the_hints_variance_explained(tiny):
    teacher, student = tiny(width=16), tiny(width=8)
    fitnet = FitNet(teacher, student, "block.0", "stem", torch.zeros(1, 1, 8, 8))
    data = synthetic(50, 0)
    got = evaluate_hint(fitnet, data, batch_size=16)
    with torch.no_grad():
        x = to_float(data.images)
        u = fitnet.hint_features(x).double().flatten(1)
        r = fitnet.regressor(fitnet.guided_features(x)).double().flatten(1)
    sse, sst = (u - r).pow(2).sum(), (u - u.mean(0)).pow(2).sum()
    assert got["r2"] == pytest.approx(float(1 - sse / sst), rel=1e-9)
    assert got["loss"] == pytest.approx(float(0.5 * sse / len(data)), rel=1e-9)

    class Mean(torch.nn.Module):  # a regressor that predicts each hint feature's mean: R² = 0
        def forward(self, v):
            return u.float().mean(0).view(1, *fitnet.hint_shape).expand(len(v), *fitnet.hint_shape)

    fitnet.regressor = Mean()
    assert evaluate_hint(fitnet, data, batch_size=50)["r2"] == pytest.approx(0, abs=1e-6)


def test_the_run_records_the_fit_and_warns_when_it_is_weak(tmp_path, caplog):
    config = load_config(None, [("method", "fitnet"), ("epochs", 1), ("hint_stage.epochs", 2), ("data.batch_size", 32),
                                ("hint_stage.optim.lr", 1e-7),  # barely trained: a weak fit
                                ("out", str(tmp_path)), ("name", "run")])
    data = Data(*(synthetic(n, i, size=28) for i, n in enumerate((128, 64, 64))))
    with caplog.at_level(logging.INFO):
        results = Run(config, progress=False).execute(data=data)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    r2 = [r["val_hint_r2"] for r in rows if r["stage"] == "hint"]
    assert len(r2) == 2 and all(v < 0.2 for v in r2)
    assert results["stages"]["hint"]["val_hint_r2"] in r2  # the fit of the weights the stage ended with
    assert "weak hint fit: R² =" in caplog.text and "fitnets suggest paper-mnist-teacher paper-mnist-fitnet" in caplog.text
