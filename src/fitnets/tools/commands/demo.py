"""``fitnets demo``: the paper's MNIST experiment (Table 4), on Fashion-MNIST, offline, on a laptop CPU.

The shipped maxout teacher (trained by ``configs/paper-mnist-teacher.fashion-mnist.yaml``) and the paper's
6-layer maxout FitNet, trained three ways on exactly the same data, schedule and engine: standard backprop
(cross-entropy), KD, and FitNets (stage 1 hints, then KD). Prints a table like the paper's Table 4 with
parameters, compression and measured inference speed-up over the teacher.

Departures from the paper's protocol, to fit minutes instead of days: Adam with a cosine schedule instead
of RMSProp with early stopping over hundreds of epochs, and (quick mode) a 20,000-image training subset.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fitnets.tools.commands.flags import DEFAULT, DEVICE_HELP
from fitnets.training.config import RunConfig, load_config
from fitnets.training.distributed import resolve_device
from fitnets.training.fast import fast_overrides
from fitnets.training.recipes import METHODS

log = logging.getLogger(__name__)

TEACHER, STUDENT = "paper-mnist-teacher", "paper-mnist-fitnet"
# The paper's three trainings of one student (Table 4), from the method table.
PAPER = {name: f"FitNet, {method.paper}" for name, method in METHODS.items() if method.paper}


@dataclass
class Protocol:
    """How long the demo trains. ``quick`` fits in under 5 minutes on a 2-core CPU."""

    train_size: int | None
    epochs: int
    hint_epochs: int
    seeds: int


QUICK = Protocol(train_size=20_000, epochs=6, hint_epochs=2, seeds=1)
FULL = Protocol(train_size=None, epochs=15, hint_epochs=5, seeds=3)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the paper's MNIST experiment on Fashion-MNIST: backprop vs KD vs FitNet")
    p.add_argument("--full", action="store_true", help="the longer protocol: more epochs, 3 seeds")
    p.add_argument("--seeds", type=int, help="number of seeds (default 1, or 3 with --full)")
    p.add_argument("--epochs", type=int, help="epochs per method (stage 2 for FitNet)")
    p.add_argument("--hint-epochs", type=int, help="FitNet stage-1 epochs")
    p.add_argument("--train-size", type=int, help="training examples")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST files")
    p.add_argument("--no-download", dest="download", action="store_false", help="never fetch the dataset")
    p.add_argument("--out", default=DEFAULT.out, help="parent folder of the demo's run folders")
    p.add_argument("--fast", nargs="?", const="tune", choices=("tune", "retune"),
                   help="train with --fast: speed options measured on the demo's models (see `fitnets distill --help`)")
    p.add_argument("--device", default=DEFAULT.device, help=DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def demo_config(method: str, seed: int, protocol: Protocol, args: argparse.Namespace) -> RunConfig:
    overrides = [("method", method), ("student", STUDENT), ("teacher", TEACHER), ("seed", seed),
                 ("epochs", protocol.epochs), ("hint_stage.epochs", protocol.hint_epochs),
                 ("data.train_size", protocol.train_size), ("data.download", args.download),
                 ("data.dir", args.data_dir), ("device", args.device),
                 ("optim.lr", 0.002), ("hint_stage.optim.lr", 0.002)]
    overrides = fast_overrides(args.fast) + overrides
    return load_config(None, overrides)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def run(args: argparse.Namespace) -> int:
    from fitnets.core.timing import inference_throughput
    from fitnets.models.registry import model_spec
    from fitnets.training.evaluate import evaluate_accuracy
    from fitnets.training.loading import load_data, load_model
    from fitnets.training.run import Run

    protocol = FULL if args.full else QUICK
    protocol = Protocol(args.train_size or protocol.train_size, args.epochs or protocol.epochs,
                        args.hint_epochs if args.hint_epochs is not None else protocol.hint_epochs,
                        args.seeds or protocol.seeds)
    out = Path(args.out) / time.strftime("demo-%Y%m%d-%H%M%S")
    device = resolve_device(args.device)
    start = time.perf_counter()
    data = load_data(demo_config(next(iter(PAPER)), 0, protocol, args), device)
    teacher = load_model(TEACHER, trained=True).to(device)
    teacher_acc = evaluate_accuracy(teacher, data.test)["acc"]
    log.info("teacher %s: test accuracy %.4f; training the student 3 ways × %d seed(s) on %d images",
             TEACHER, teacher_acc, protocol.seeds, len(data.train))

    accs: dict[str, list[float]] = {m: [] for m in PAPER}
    for seed in range(protocol.seeds):
        for method, label in PAPER.items():
            log.info("— %s, seed %d", label, seed)
            run = Run(demo_config(method, seed, protocol, args), out / f"{method}-seed{seed}",
                      progress=not args.no_progress)
            accs[method].append(run.execute(data=data)["test_acc"])
            args.fast = "tune" if args.fast else None  # --fast=retune: measured once, by the first run

    shape = model_spec(STUDENT).input_shape
    student = load_model(STUDENT).to(device)
    teacher_speed = inference_throughput(teacher, shape, device=device)
    student_speed = inference_throughput(student, shape, device=device)
    n_teacher = sum(p.numel() for p in teacher.parameters())
    n_student = sum(p.numel() for p in student.parameters())
    rows = [("Teacher (maxout, 3 conv layers)", n_teacher, 1.0, 1.0, mean_std([teacher_acc]))]
    rows += [(label, n_student, n_teacher / n_student, student_speed / teacher_speed, mean_std(accs[m]))
             for m, label in PAPER.items()]
    table = ["| model | parameters | compression | speed-up | test accuracy (%) |",
             "|---|---:|---:|---:|---:|"]
    table += [f"| {name} | {params:,} | {comp:.1f}× | {speed:.2f}× | {acc} |"
              for name, params, comp, speed, acc in rows]
    plural = protocol.seeds > 1
    seeds = f"{protocol.seeds} seed{'s' if plural else ''}" + (" (mean ± std)" if plural else "")
    note = (f"Fashion-MNIST, {len(data.train):,} training images, {protocol.epochs} epochs "
            f"(FitNet: {protocol.hint_epochs} hint + {protocol.epochs} KD), {seeds}; "
            f"{'--fast; ' if args.fast else ''}speed-up: inference, batch 256, {device}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; "
            f"{time.perf_counter() - start:.0f}s in all.")
    text = "\n".join(table) + "\n\n" + note + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    print("\n" + text + f"Runs and this table: {out}")
    return 0
