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


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    import fcntl

    layers = subprocess.Popen([sys.executable, "-m", "fitnets", "layers", "resnet110"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    fcntl.fcntl(layers.stdout.fileno(), 1031, 4096)   # F_SETPIPE_SZ: a pipe smaller than the 20 KB table
    layers.stdout.readline()   # `| head -1`
    layers.stdout.close()
    _, err = layers.communicate(timeout=120)
    assert layers.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err[-500:]


def test_a_factory_students_default_folder_is_a_name_later_commands_take(tmp_path):
    from fitnets.training.config import load_config
    from fitnets.training.loading import default_name

    config = load_config(None, [("method", "kd"), ("student", "my_pkg.models:make_net"), ("seed", 2)])
    assert default_name(config) == "kd-make_net-seed2"      # not kd-my_pkg.models:make_net-seed2, read as NAME:PATH
