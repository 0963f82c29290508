"""Issue-19 cases that were tracebacks: each now ends in one line naming the cause."""

from safetensors.torch import save_file

from fitnets.models.registry import create_model
from fitnets.tools.cli import main


def one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and not any("Traceback" in line for line in err), err
    return err[-1]


def test_a_model_that_cannot_take_the_datasets_images(tmp_path, capsys, fashion_dir):
    weights = tmp_path / "rgb.safetensors"
    save_file(create_model("resnet8").state_dict(), str(weights))   # 3 channels; Fashion-MNIST has 1
    assert "cannot run on an input of shape (2, 1, 28, 28)" in one_line(capsys, ["evaluate", f"resnet8:{weights}"])


def test_suggest_with_an_input_shape_the_pair_cannot_take(capsys):
    err = one_line(capsys, ["suggest", "paper-mnist-teacher", "paper-mnist-fitnet", "--input-shape", "3,32,32"])
    assert "cannot run on an input of shape (2, 3, 32, 32)" in err


def test_a_student_with_no_parameters(tmp_path, capsys, monkeypatch, fashion_dir):
    (tmp_path / "noparams.py").write_text("from torch import nn\nclass N(nn.Module):\n    def forward(self, x):\n"
                                          "        return x.flatten(1)[:, :10]\ndef make():\n    return N()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = one_line(capsys, ["train", "--student", "noparams:make", "--epochs", "1", "--train-size", "200",
                            "--val-size", "50", "--out", str(tmp_path), "--no-progress"])
    assert "has no trainable parameters" in err
