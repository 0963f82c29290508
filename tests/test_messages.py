"""What a run says agrees with what it does, and is said once: the plan's λ schedule of a short KD stage, the
diagnostics a run without validation examples cannot log, the notes building the stages makes."""

import pytest
import torch

from conftest import user_module
from fitnets.tools.cli import main

USER = '''
import torch
from torch import nn

class Items(torch.utils.data.Dataset):
    def __init__(self, n=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 2
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i], int(self.y[i])

def splits():
    return {"train": Items(), "test": Items(20, seed=1)}

def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 2))
'''


@pytest.fixture
def argv(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    user = user_module(tmp_path, monkeypatch, "msgdata", USER)
    save_file(user.net().state_dict(), str(tmp_path / "teacher.safetensors"))
    return ["distill", "--data", "msgdata:splits", "--teacher", f"msgdata:net:{tmp_path / 'teacher.safetensors'}",
            "--student", "msgdata:net", "--epochs", "1", "--out", str(tmp_path), "--no-progress", "--set",
            "data.workers=0", "--augment", "random-resized-crop", "--set", "data.image_size=[8,8]"]


def test_notes_are_said_once_and_a_one_epoch_kd_stage_states_its_lambda(argv, capsys):
    assert main([*argv, "--method", "kd", "--val-size", "8"]) == 0
    err = capsys.readouterr().err
    assert err.count("no teacher-output store") == 1, err   # the plan and the run share their stages
    assert "λ 2.5: the mean of 4→1, as one epoch cannot decay" in err


def test_hint_diagnostics_without_validation_examples_warns(argv, capsys):
    assert main([*argv, "--method", "fitnet", "--hint", "1", "--guided", "1", "--hint-epochs", "1", "--val-size", "0",
                 "--hint-diagnostics", "100"]) == 0
    err = capsys.readouterr().err
    assert err.count("hint_stage.diagnostics (--hint-diagnostics 100) measures on validation examples") == 1, err


def test_kd_weight_over_one_epoch_is_the_decays_mean():
    from fitnets.training.config import KDConfig
    from fitnets.training.steps import KDStep

    step = KDStep(torch.nn.Linear(2, 2), None, KDConfig(), epochs=1)
    assert step.kd_weight(0) == 2.5
