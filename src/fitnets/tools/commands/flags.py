"""The flags a run takes (``train``, ``distill``, ``run``, ``store build``) and how they become its config, and
what other commands share with them: the help of a model argument, ``--input-shape`` and ``--seeds``."""

from __future__ import annotations

import argparse
import copy

from fitnets.data.loader import DATASETS
from fitnets.errors import FitNetsError
from fitnets.models.registry import model_spec
from fitnets.training.config import (
    FLAG_KEYS,
    RunConfig,
    choices,
    flag_overrides,
    flatten,
    load_config,
    parse_override,
    read_config_file,
    resume_changes,
)
from fitnets.training.loading import ModelRef, input_shape
from fitnets.training.methods import METHODS
from fitnets.training.run_folder import resume_point

DATASETS_HELP = ", ".join(DATASETS)  # the --data choices, as help text
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"
DEFAULT = RunConfig()  # the defaults a command's flags take, read from the config (never restated here)
# What every command that takes a model accepts: the forms fitnets.training.loading.ModelRef parses.
MODEL_FORMS = "NAME, NAME:PATH, RUN_DIR or package.module:factory[:PATH]"

def add_run_flags(p: argparse.ArgumentParser, distill: bool) -> None:
    p.add_argument("--config", help="YAML or TOML file of config keys (flags override it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--student", "--model", dest="student",
                   help="registered model name (see `fitnets models`), or package.module:factory (your own)")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the model's, else the dataset's)")
    if distill:
        p.add_argument("--teacher", help=f"the trained teacher: {MODEL_FORMS} (NAME alone: its shipped weights; "
                                         "PATH: a weights file or a run folder)")
        p.add_argument("--method", choices=choices("method"),
                       help="; ".join(f"{name}: {method.help}" for name, method in METHODS.items()))
        p.add_argument("--hint", help="teacher module path of the hint layer")
        p.add_argument("--guided", help="student module path of the guided layer")
        p.add_argument("--hint-epochs", type=int, help="epochs of FitNets' stage 1")
        p.add_argument("--regressor-first", type=int, metavar="N",
                       help="the first N hint epochs train the regressor alone, the student frozen (a reading of "
                            "Algorithm 1 to compare with the paper's joint stage 1; default 0)")
        p.add_argument("--hint-diagnostics", type=int, nargs="?", const=1000, metavar="N",
                       help="log per hint epoch a linear probe of the labels on the guided features and their CKA "
                            "with the hint, on N validation examples (default N: 1000)")
        p.add_argument("--temperature", type=float, help="KD temperature τ (paper: 3)")
        p.add_argument("--tau-squared", action="store_true", default=None, help="Hinton's τ² factor on the KD term")
    p.add_argument("--epochs", type=int, help="epochs of the main stage")
    p.add_argument("--batch-size", type=int, help="examples per training batch (sets data.batch_size)")
    p.add_argument("--lr", type=float, help="learning rate of every stage (sets optim.lr, and FitNets' stage 1's "
                                            "hint_stage.optim.lr unless a config file or --set gives that)")
    p.add_argument("--optimizer", choices=choices("optim.name"),
                   help="optimizer of every stage (sets optim.name, and hint_stage.optim.name unless a config file "
                        "or --set gives that)")
    p.add_argument("--data", help=f"dataset: {DATASETS_HELP} (folder: an image folder tree at --data-dir), or "
                                  "package.module:factory, your callable returning {'train': Dataset, 'test': "
                                  "Dataset} (optionally 'val', 'num_classes')")
    p.add_argument("--augment", choices=choices("data.augment"),
                   help="the random augmentation of training batches (sets data.augment; pad-flip moves and flips "
                        "only by data.pad / data.flip, which are 0 and off by default: no augmentation)")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.add_argument("--download", action="store_true", default=None, help="fetch the dataset if it is missing")
    p.add_argument("--train-size", type=int, help="train on a fixed random subset")
    p.add_argument("--val-size", type=int, help="examples held out for validation")
    p.add_argument("--seed", type=int, help="random seed: initialisation, data order and augmentation")
    p.add_argument("--seeds", help="run once per seed, e.g. 0,1,2 or 3 (= 0,1,2); one run folder each")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--channels-last", action="store_true", default=None, help="student in channels_last")
    p.add_argument("--teacher-dtype", choices=choices("teacher_dtype"), help="the teacher's weights and forward")
    p.add_argument("--student-dtype", choices=choices("student_dtype"), help="autocast the student's step")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the forwards")
    p.add_argument("--fast", nargs="?", const="tune", choices=("tune", "retune"),
                   help="the speed options measured safe for accuracy, chosen by timing them on this run's models at "
                        "its start (bf16 teacher and student, channels_last; cached per models and machine; "
                        "--fast=retune: measure again; flags given with it win)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write the metrics as TensorBoard scalars in RUN_DIR/tensorboard (pip install "
                        "'fitnets[tensorboard]')")
    p.add_argument("--out", help=f"parent folder of run folders (default {DEFAULT.out}/)")
    p.add_argument("--name", help="run folder name")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (its config, then any flags)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: defaults, the ``--resume`` folder's config, ``--config``, ``--fast``, then ``--set`` and
    the named flags; with ``--resume``, a change the resume rule refuses is an error here, before anything is
    built."""
    overrides = [parse_override(text) for text in args.set]
    explicit = [key for key, _ in overrides] + (list(flatten(read_config_file(args.config))) if args.config else [])
    overrides += flag_overrides({flag: getattr(args, flag, None) for flag in FLAG_KEYS}, explicit)
    shape = parse_shape(getattr(args, "input_shape", None))
    if shape:
        overrides.append(("input_shape", list(shape)))
    if getattr(args, "fast", None):  # first, so that the flags and --set keys given with it win
        from fitnets.training.fast import fast_overrides

        overrides = fast_overrides(args.fast, explicit + [key for key, _ in overrides]) + overrides
    if not args.resume:
        return load_config(args.config, overrides)
    saved, _ = resume_point(args.resume, tensors=False)  # the folder's identity, checked against its checkpoint
    config = load_config(args.config, overrides, base=copy.deepcopy(saved))
    resume_changes(saved, config)  # refused before anything is built (the run checks it again)
    return config


def parse_seeds(text: str) -> list[int]:
    """``--seeds 3`` → ``[0, 1, 2]``; ``--seeds 4,7`` → ``[4, 7]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FitNetsError(f"bad --seeds {text!r}: expected a count (3) or a list (0,1,2)") from None
    if len(values) == 1 and "," not in text:
        values = list(range(values[0]))
    if not values:
        raise FitNetsError(f"bad --seeds {text!r}: no seed")
    return values


def model_input_shape(ref: ModelRef, text: str | None) -> tuple[int, ...] | None:
    """One example's shape for the model ``ref`` names: ``--input-shape`` when given, else the shape its run
    folder's run used (``loading.input_shape``), else the registry's; ``None`` when none is known (a
    ``package.module:factory`` without ``--input-shape``)."""
    shape = parse_shape(text)
    if shape is None and ref.run is not None:
        shape = input_shape(ref.run)
    return shape or tuple(model_spec(ref.name).input_shape) or None


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape C,H,W`` → ``(C, H, W)``; ``None`` when the flag is absent."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise FitNetsError(f"bad --input-shape {text!r}: expected C,H,W such as 3,32,32") from None
