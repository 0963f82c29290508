"""Every user mistake: one clear line on stderr, exit code 2, nothing saved is lost."""

import argparse
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from fitnets.checkpoint import load_checkpoint, save_checkpoint
from fitnets.tools.cli import build_parser, main
from fitnets.models import create_model
from fitnets.models.registry import _REGISTRY, register_model


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_line(err):
    return err.strip().splitlines()[-1]


SMALL = ["--train-size", "600", "--val-size", "200", "--set", "data.test_size=500", "--no-progress"]


def test_unknown_layer_path(capsys, fashion_dir, tmp_path):
    code, _, err = run_cli(capsys, "distill", "--hint", "conv22", "--out", str(tmp_path), *SMALL)
    assert code == 2
    assert err.count("\n") == 1 and "no layer 'conv22'" in err and "Did you mean: conv2" in err


def test_shapes_no_regressor_can_join(capsys, tmp_path):
    code, _, err = run_cli(capsys, "distill", "--guided", "classifier", "--out", str(tmp_path), *SMALL)
    assert code == 2 and "no regressor joins guided (10,) to hint (48, 4, 4)" in last_line(err)


def test_teacher_checkpoint_of_wrong_architecture(capsys, tmp_path):
    weights = tmp_path / "student.safetensors"
    save_checkpoint(weights, create_model("paper-mnist-fitnet").state_dict(), {})
    code, _, err = run_cli(capsys, "distill", "--teacher", f"paper-mnist-teacher:{weights}", "--dry-run")
    assert code == 2 and "do not match PaperMnistTeacher" in last_line(err)


def test_corrupt_teacher_checkpoint(capsys, tmp_path):
    weights = tmp_path / "t.safetensors"
    save_checkpoint(weights, create_model("paper-mnist-teacher").state_dict(), {})
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = run_cli(capsys, "distill", "--teacher", f"paper-mnist-teacher:{weights}", "--dry-run")
    assert code == 2 and "corrupt or truncated" in last_line(err)


def test_teacher_without_weights(capsys):
    code, _, err = run_cli(capsys, "distill", "--teacher", "paper-mnist-fitnet", "--dry-run")
    assert code == 2 and "--teacher paper-mnist-fitnet:PATH" in last_line(err)
    code, _, err = run_cli(capsys, "evaluate", "paper-mnist-fitnet")
    assert code == 2 and "fitnets evaluate paper-mnist-fitnet:PATH" in last_line(err)


def test_missing_dataset(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FITNETS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run_cli(capsys, "train", "--data", "mnist", "--data-dir", str(tmp_path / "none"),
                           "--out", str(tmp_path), "--no-progress")
    assert code == 2 and "--data-dir" in last_line(err) and "does not exist" in last_line(err)
    code, _, err = run_cli(capsys, "train", "--data", "mnist", "--out", str(tmp_path), "--no-progress",
                           "--set", "data.dir=null")
    assert code == 2 and "mnist not found" in last_line(err) and "--download" in last_line(err)


def test_unknown_config_key_and_bad_value(capsys, tmp_path):
    code, _, err = run_cli(capsys, "distill", "--set", "kd.temprature=4", "--dry-run")
    assert code == 2 and "Did you mean: kd.temperature" in err and err.count("\n") == 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: many\n")
    code, _, err = run_cli(capsys, "distill", "--config", str(cfg), "--dry-run")
    assert code == 2 and "epochs: 'many' is not a int" in err


def test_dry_run_prints_the_plan(capsys):
    code, out, _ = run_cli(capsys, "distill", "--dry-run")
    assert code == 0
    assert "hint    conv2 (48, 4, 4)" in out and "guided  conv4 (16, 4, 4)" in out
    assert "Conv2d(kernel (1, 1), 1,632 parameters, activation Maxout(2 pieces))" in out
    assert "stage 1" in out and "conv1.conv.weight" in out and "stage 2" in out


def test_layers_and_models(capsys):
    code, out, _ = run_cli(capsys, "layers", "paper-mnist-teacher")
    assert code == 0 and "conv2 " in out and "(48, 4, 4)" in out
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "paper-mnist-fitnet" in out and "shipped weights" in out
    code, _, err = run_cli(capsys, "layers", "paper-mnist-fitnet", "--input-shape", "1x28")
    assert code == 2 and "bad --input-shape" in err
    code, out, _ = run_cli(capsys, "layers", "resnet20", "--depth", "2")
    paths = [line.split()[0] for line in out.splitlines()[1:]]
    assert code == 0 and {"layer2", "layer2.1"} <= set(paths) and "layer2.1.conv1" not in paths


def test_every_flag_and_command_has_help():
    seen, missing = set(), []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing.extend(f"{path} {command.dest}" for command in action._choices_actions if not command.help)
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
                continue
            name = f"{path} {'/'.join(action.option_strings) or action.dest}"
            seen.add(name)
            if not (action.help or "").strip():
                missing.append(name)

    walk(build_parser(), "fitnets")
    assert {"fitnets store build --lr", "fitnets bench step --warmup", "fitnets demo --device", "fitnets layers model"} <= seen
    assert not missing, f"no help text: {', '.join(missing)}"


def subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_run_flags_help_names_what_they_set():
    from fitnets.data.loader import DATASETS

    flags = {a.dest: a.help for a in subparser("distill")._actions}
    assert "optim.lr" in flags["lr"] and "hint_stage.optim.lr" in flags["lr"]   # both stages', unless set
    assert "optim.name" in flags["optimizer"] and "hint_stage.optim.name" in flags["optimizer"]
    assert all(name in flags["data"] for name in DATASETS)


def test_flag_choices_are_read_from_the_config_fields():
    from fitnets.training.config import FLAG_KEYS, choices

    checked = 0
    for action in subparser("distill")._actions:
        if action.dest in FLAG_KEYS:  # a flag that sets config keys offers exactly their fields' choices
            keys = FLAG_KEYS[action.dest] if isinstance(FLAG_KEYS[action.dest], tuple) else (FLAG_KEYS[action.dest],)
            for key in keys:
                assert tuple(action.choices or ()) == (choices(key) or ()), (action.dest, key)
            checked += bool(action.choices)
    assert checked >= 4  # method, optimizer, the two dtypes


class BlowsUp(nn.Module):
    """Finite for the first `after` forwards in training mode, then NaN."""

    def __init__(self, after: int = 8, num_classes: int = 10):
        super().__init__()
        self.body = create_model("paper-mnist-fitnet")
        self.after, self.calls = after, 0

    def forward(self, x):
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


@pytest.fixture
def blows_up():
    register_model("test-blows-up", BlowsUp, input_shape=(1, 28, 28))
    yield
    del _REGISTRY["test-blows-up"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(capsys, tmp_path, blows_up, fashion_dir):
    # 600 images / batch 128 = 5 steps an epoch: epoch 1 is clean, step 4 of epoch 2 is the first NaN.
    code, _, err = run_cli(capsys, "train", "--student", "test-blows-up", "--epochs", "3", "--out", str(tmp_path),
                           "--name", "nan", "--set", "log_every=2", *SMALL)
    assert code == 2
    assert "loss became non-finite in stage main, epoch 2, step 4" in last_line(err)
    tensors, meta = load_checkpoint(tmp_path / "nan" / "last.safetensors")
    assert meta["epoch"] == 0 and all(torch.isfinite(t).all() for t in tensors.values())
    assert len((tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()) == 1


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path, fashion_dir):
    args = ["train", "--epochs", "1", "--out", str(tmp_path), "--name", "r", *SMALL]
    assert run_cli(capsys, *args)[0] == 0
    before = (tmp_path / "r" / "student.safetensors").read_bytes()
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "already holds a run" in last_line(err)
    assert (tmp_path / "r" / "student.safetensors").read_bytes() == before


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fitnets", "distill", "--method", "nope"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "fitnets", "layers", "paper-mnist-fitnett"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown model") and "Traceback" not in proc.stderr


def test_bench_speed_small_pair(capsys):
    code, out, _ = run_cli(capsys, "bench", "speed", "--teacher", "paper-mnist-teacher", "--student",
                           "paper-mnist-fitnet", "--batch-size", "8", "--repeats", "2", "--device", "cpu")
    assert code == 0
    teacher, student = ([c.strip() for c in line.split("|")] for line in out.splitlines()
                        if line.startswith("| paper-mnist-teacher | paper-mnist-"))
    assert student[3] == "29,944"  # the paper's count
    assert float(student[5]) == pytest.approx(360_816 / 29_944, rel=1e-3)  # compression: the teacher's over it
    from fitnets.core.profile import count_macs

    assert student[4] == f"{count_macs(create_model('paper-mnist-fitnet'), (1, 28, 28)) / 1e6:.1f}M"
    rate = {row[2]: float(row[6].replace(",", "")) for row in (teacher, student)}
    assert teacher[7] == "1.00" and float(student[7]) == pytest.approx(
        rate["paper-mnist-fitnet"] / rate["paper-mnist-teacher"], rel=0.01)  # the speed-up: images/s over the teacher's
    code, _, err = run_cli(capsys, "bench", "speed", "--teacher", "paper-mnist-teacher")
    assert code == 2 and "give both" in err


def test_seeds_and_run_file(capsys, tmp_path):
    from fitnets.tools.commands.flags import parse_seeds

    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds("5,") == [5]
    with pytest.raises(Exception, match="bad --seeds"):
        parse_seeds("a,b")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("method: kd\nname: exp\n")
    code, out, _ = run_cli(capsys, "run", str(cfg), "--seeds", "0,1", "--dry-run", "--out", str(tmp_path))
    assert code == 0
    assert out.count("method   kd") == 2 and "exp-seed0" in out and "exp-seed1" in out


def protocol_store_build_share() -> float:
    """Teacher forwards to fill a store over those a live KD run of the CIFAR-100 protocol spends, worked out
    without the bench's constants or ``Augmentation.views``: the protocol (epochs, pad, flip) read from its KD
    configs, and its views counted as the distinct images its random augmentation makes of one image."""
    import glob
    from pathlib import Path

    from fitnets.data import augment
    from fitnets.training.config import load_config

    configs = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "configs" / "cifar100" / "*-kd.yaml")))
    protocol = {(c.epochs, c.data.pad, c.data.flip) for c in map(load_config, configs)}
    assert len(configs) >= 5 and len(protocol) == 1, protocol
    ((epochs, pad, flip),) = protocol
    g = torch.Generator().manual_seed(0)
    image = torch.randint(1, 256, (1, 1, 8, 8), dtype=torch.uint8, generator=g)  # no zero pixel: shifts differ
    views = augment(image.expand(20_000, -1, -1, -1), g, pad, flip).flatten(1).unique(dim=0)  # ≫ views draws
    return len(views) / epochs


def test_bench_step_json(capsys):
    code, out, _ = run_cli(capsys, "bench", "step", "--steps", "2", "--warmup", "1", "--batch-size", "16",
                           "--device", "cpu", "--json", "--no-compile", "--rounds", "2", "--all")
    assert code == 0
    result = json.loads(out)
    rows = result["rows"]
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names) and all(r["images_per_s"] > 0 and len(r["rates"]) == 2 for r in rows)
    # each method's step with the defaults, the fixed preset and --fast's measured choice, then the option matrix
    for step in ("CE step", "KD step, teacher logits cached", "FitNet stage 1, cut, hints cached",
                 "KD step, teacher-output store, augmented batches"):
        assert {(step, "defaults"), (step, "fixed preset"), (step, "--fast")} <= {(r["step"], r["settings"]) for r in rows}
    assert not any("store hit rate" in r["note"] for r in rows)  # every timed lookup found its view stored
    assert set(result["ratios"]) == {"kd_fast_over_baseline", "kd_fast_bf16_over_baseline", "kd_cached_cost",
                                     "stage1_cut_cost", "stage1_fast_cost", "stage1_cached_cost", "data_wait_share",
                                     "fastest_teacher_option", "fastest_student_option", "kd_store_cost",
                                     "kd_fast_store_speedup", "kd_preset_store_speedup", "store_build_share",
                                     "fast_choice", "fast_tuning_s"}
    assert 0 <= result["ratios"]["data_wait_share"] < 1 and "compile" not in result["preset"]
    assert result["ratios"]["fast_choice"].startswith("student ") and result["ratios"]["fast_tuning_s"] > 0
    assert result["ratios"]["store_build_share"] == protocol_store_build_share()
    assert result["ratios"]["fastest_teacher_option"].startswith(("teacher ", "every option off"))
    code, _, err = run_cli(capsys, "bench", "step", "--rounds", "0")
    assert code == 2 and "--rounds" in err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fashion_dir):
    """A trained run whose student has a constructor argument of its own (pieces_last=2: a smaller conv5)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--student", "paper-mnist-fitnet", "--epochs", "1", "--out", str(out), "--name", "t",
                 "--set", "model_args={num_classes: 10, pieces_last: 2}", *SMALL]) == 0
    return out / "t"


def test_teacher_from_a_run_folder_uses_its_model_args(capsys, run_dir):
    code, out, err = run_cli(capsys, "distill", "--method", "kd", "--teacher", f"paper-mnist-fitnet:{run_dir}",
                             "--dry-run")
    assert code == 0, err
    n = sum(p.numel() for p in create_model("paper-mnist-fitnet", pieces_last=2).parameters())
    assert n != 36_226 and f"teacher  paper-mnist-fitnet:{run_dir} ({n:,} parameters" in out
    # the run folder alone names the teacher too (RUN_DIR): its model, its arguments, its registry entry
    code, out, err = run_cli(capsys, "distill", "--method", "kd", "--teacher", str(run_dir), "--dry-run")
    assert code == 0 and f"({n:,} parameters" in out, err
    code, _, err = run_cli(capsys, "distill", "--method", "fitnet", "--teacher", str(run_dir), "--dry-run")
    assert code == 2 and "needs --hint and --guided" in last_line(err)  # paper-mnist-fitnet has no default hint


def test_every_command_that_takes_a_model_takes_a_run_folder(capsys, run_dir):
    conv5 = sum(p.numel() for p in create_model("paper-mnist-fitnet", pieces_last=2).conv5.conv.parameters())
    assert conv5 != sum(p.numel() for p in create_model("paper-mnist-fitnet").conv5.conv.parameters())
    for spec in (str(run_dir), f"paper-mnist-fitnet:{run_dir}"):  # RUN_DIR and NAME:PATH: the run's own model
        code, out, err = run_cli(capsys, "layers", spec)
        assert code == 0, err
        assert next(line for line in out.splitlines() if line.startswith("conv5.conv ")).split()[2] == f"{conv5:,}"
    code, out, err = run_cli(capsys, "suggest", "paper-mnist-teacher", str(run_dir), "--top", "3")
    assert code == 0 and "The registry's default pair (conv2 → conv4)" in out, err  # found through the run's model
    code, out, err = run_cli(capsys, "bench", "step", "--student", str(run_dir), "--steps", "1", "--warmup", "0",
                             "--rounds", "1", "--no-compile", "--batch-size", "8", "--device", "cpu", "--json")
    # a bench times the run's architecture, by its registry name; the arguments it leaves out are named
    left_out = f"--student {run_dir}: timed as paper-mnist-fitnet without its model_args {{'pieces_last': 2}}"
    assert code == 0 and json.loads(out)["student"] == str(run_dir) and left_out in err, err
    code, out, err = run_cli(capsys, "bench", "speed", "--teacher", "paper-mnist-teacher", "--student", str(run_dir),
                             "--batch-size", "4", "--repeats", "1", "--device", "cpu")
    assert code == 0 and "| paper-mnist-teacher | paper-mnist-fitnet | 29,944 |" in out and left_out in err, err


def test_a_failing_torch_compile_is_one_line(capsys, tmp_path, fashion_dir, monkeypatch):
    def no_compiler(gm, example_inputs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=no_compiler))
    code, _, err = run_cli(capsys, "train", "--compile", "--epochs", "1", "--out", str(tmp_path), *SMALL)
    assert code == 2
    assert err.strip().splitlines()[-1] == ("error: torch.compile failed: RuntimeError: InvalidCxxCompiler: No "
                                            "working C++ compiler found — run without --compile")
    assert "Traceback" not in err


def test_augment_flag_and_the_data_flags_help(capsys):
    from fitnets.tools.commands.flags import config_from_args

    args = build_parser().parse_args(["distill", "--augment", "random-resized-crop", "--set", "data.image_size=[8,8]"])
    assert config_from_args(args).data.augment == "random-resized-crop"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--help"])
    assert "package.module:factory" in " ".join(capsys.readouterr().out.split())


def test_flag_defaults_are_read_from_the_config_not_restated():
    """`--out`, `--device` and `--data` default to the config's own defaults (one home for each fact)."""
    import re
    from pathlib import Path

    from fitnets.tools.cli import build_parser
    from fitnets.training.config import RunConfig

    parser, default = build_parser(), RunConfig()
    demo = parser.parse_args(["demo"])
    assert (demo.out, demo.device) == (default.out, default.device)
    suggest = parser.parse_args(["suggest", "a", "b"])
    assert (suggest.data, suggest.device) == (default.data.name, default.device)
    commands = Path(__file__).resolve().parents[1] / "src" / "fitnets" / "tools" / "commands"
    restated = [f"{p.name}: {m.group(0)}" for p in commands.glob("*.py")
                for m in re.finditer(r'default="(runs|auto|fashion-mnist)"', p.read_text())]
    assert not restated, restated
