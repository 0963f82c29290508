import pytest

from fitnets.training.config import RunConfig, load_config, parse_override
from fitnets.errors import FitNetsError


def test_defaults_follow_the_paper():
    config = RunConfig()
    assert config.kd.temperature == 3.0 and config.kd.weight_start == 4.0 and config.kd.weight_end == 1.0
    assert config.kd.tau_squared is False and config.data.batch_size == 128


def test_file_then_overrides(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("method: kd\nepochs: 7\noptim:\n  lr: 0.01\ndata:\n  pad: 2\n")
    config = load_config(yml, [parse_override("optim.lr=0.5"), ("seed", 3), parse_override("kd.temperature=1e1")])
    assert config.kd.temperature == 10.0
    assert (config.method, config.epochs, config.optim.lr, config.data.pad, config.seed) == ("kd", 7, 0.5, 2, 3)
    toml = tmp_path / "c.toml"
    toml.write_text('method = "ce"\n[hint_stage]\nepochs = 2\n[hint_stage.optim]\nlr = 1\n')
    config = load_config(toml)
    assert config.hint_stage.epochs == 2 and config.hint_stage.optim.lr == 1.0


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(FitNetsError, match="unknown config key 'optim.lrr'.*Did you mean: optim.lr"):
        load_config(None, [("optim.lrr", 0.1)])
    yml = tmp_path / "c.yaml"
    yml.write_text("epoch: 3\n")
    with pytest.raises(FitNetsError, match="unknown config key 'epoch'.*epochs"):
        load_config(yml)


@pytest.mark.parametrize("key,value,match", [
    ("epochs", "ten", "is not a int"), ("epochs", -1, "epochs must be"), ("method", "magic", "method must be"),
    ("optim.lr", 0, "optim.lr must be > 0"), ("kd.temperature", -2.0, "temperature"), ("optim", 3, "section"),
    ("data.batch_size", True, "is not a int"), ("optim.milestones", [1, "x"], r"optim.milestones\[1\]: 'x'"),
    ("optim.milestones", 5, "is not a list"), ("optim.schedule", "step", "needs optim.milestones"),
])
def test_bad_values(key, value, match):
    with pytest.raises(FitNetsError, match=match):
        load_config(None, [(key, value)])


def test_bad_override_syntax_and_file(tmp_path):
    with pytest.raises(FitNetsError, match="KEY=VALUE"):
        parse_override("optim.lr")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(FitNetsError, match="cannot parse"):
        load_config(bad)
    with pytest.raises(FitNetsError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    from fitnets.models import model_spec

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert len(paths) > 40
    for path in paths:
        config = load_config(path)
        model_spec(config.student)
        if config.method != "ce":
            model_spec(config.teacher.partition(":")[0])


def test_dotted_overrides_of_a_dict_field_add_keys():
    config = load_config(None, [("model_args.in_channels", 1), ("model_args.num_classes", 10),
                                ("teacher_args", {"width": 4}), ("teacher_args.depth", 2)])
    assert config.model_args == {"in_channels": 1, "num_classes": 10}
    assert config.teacher_args == {"width": 4, "depth": 2}


def test_data_workers_default_from_the_cores():
    from fitnets.training.schema import default_workers

    assert [default_workers(n) for n in (1, 2, 3, 4, 8, 64)] == [0, 0, 2, 3, 4, 4]   # one core stays with the step
    assert RunConfig().data.workers == default_workers()
