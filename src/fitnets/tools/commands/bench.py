"""``fitnets bench speed`` (inference speed-up and compression over the teacher, the paper's Table 5) and
``fitnets bench step`` (training throughput of each method's step, with the defaults and with ``--fast``)."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import DEFAULT, DEVICE_HELP, MODEL_FORMS, model_input_shape
from fitnets.training.config import DataConfig
from fitnets.training.loading import ModelRef

log = logging.getLogger("fitnets")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measurements: `bench speed` (inference, paper's Table 5), "
                                     "`bench step` (training)")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("speed", help="inference speed-up and compression of students over their teacher")
    p.add_argument("--teacher", help=f"teacher model: {MODEL_FORMS}; weights are not needed (default: the paper's "
                                     "CIFAR and MNIST teachers)")
    p.add_argument("--student", action="append", help="student model, in the same forms (repeatable)")
    p.add_argument("--batch-size", type=int, default=128, help="images per timed batch (default %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="timed batches per model (after 3 warm-up ones)")
    p.add_argument("--device", default=DEFAULT.device, help=DEVICE_HELP)
    p.set_defaults(func=run_speed)
    p = bench.add_parser("step", help="training throughput of each method's step: the defaults, the fixed preset, "
                                    "--fast's measured choice")
    p.add_argument("--teacher", default="paper-mnist-teacher",
                   help=f"teacher model: {MODEL_FORMS}; weights are not needed (default %(default)s)")
    p.add_argument("--student", default="paper-mnist-fitnet",
                   help="student model, in the same forms (default %(default)s)")
    p.add_argument("--hint", help="teacher layer (default: the registry's)")
    p.add_argument("--guided", help="student layer (default: the registry's)")
    p.add_argument("--batch-size", type=int, default=DataConfig.batch_size,
                   help="examples per step (default %(default)s, a run's)")
    p.add_argument("--input-shape", help="C,H,W (default: the student's run folder's, else the student's)")
    p.add_argument("--num-classes", type=int,
                   help="classes of the synthetic labels and of the models' outputs (default: the run folders' "
                        "model_args.num_classes, else 10)")
    p.add_argument("--steps", type=int, default=30, help="steps of a timed epoch")
    p.add_argument("--rounds", type=int, default=3,
                   help="timed epochs per row, taken in turn; each row keeps the median")
    p.add_argument("--warmup", type=int, default=10, help="steps of the untimed epoch before a row's first")
    p.add_argument("--all", action="store_true", help="also every speed option on its own (the option matrix)")
    p.add_argument("--only", metavar="TEXT", help="only the rows whose name holds TEXT, e.g. 'stage 1'")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants (no compiler)")
    p.add_argument("--device", default=DEFAULT.device, help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    p.set_defaults(func=run_step)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def _timed(spec: str, flag: str) -> ModelRef:
    """The model ``spec`` names, in any form ``ModelRef`` parses. A bench times an architecture, so the weights
    are not read; ``bench step`` builds its models by registry name with ``num_classes`` only, so a run folder's other
    ``model_args`` (say a width) are left out, and said so."""
    ref = ModelRef.parse(spec)
    others = {k: v for k, v in ref.model_args.items() if k != "num_classes"}
    if others:
        log.warning("%s %s: timed as %s without its model_args %s", flag, spec, ref.name, others)
    return ref


def run_step(args: argparse.Namespace) -> int:
    from fitnets.tools.bench_step import bench_step, fast_settings, format_step_table
    from fitnets.training.distributed import resolve_device

    teacher, student = _timed(args.teacher, "--teacher"), _timed(args.student, "--student")
    num_classes = args.num_classes
    if num_classes is None:
        num_classes = student.model_args.get("num_classes") or teacher.model_args.get("num_classes") or 10
    if min(args.rounds, args.steps, args.batch_size, num_classes) < 1 or args.warmup < 0:
        raise FitNetsError("--rounds, --steps, --batch-size and --num-classes must be ≥ 1, --warmup ≥ 0")
    device = resolve_device(args.device)
    shape = model_input_shape(student, args.input_shape)
    rows, ratios = bench_step(teacher.name, student.name, args.batch_size, shape, num_classes, args.steps,
                              args.warmup, device, args.hint, args.guided, compile=not args.no_compile,
                              rounds=args.rounds, matrix=args.all,
                              only=args.only, progress=not args.json)
    context = {"teacher": args.teacher, "student": args.student, "batch_size": args.batch_size,
               "device": _hardware(device), "torch": torch.__version__, "steps": args.steps,
               "warmup": args.warmup, "rounds": args.rounds, "preset": fast_settings(device, not args.no_compile)}
    if args.json:
        print(json.dumps({**context, "rows": [r.__dict__ for r in rows], "ratios": ratios}, indent=2))
        return 0
    print(format_step_table(rows, ratios))
    print(f"\n{args.teacher} → {args.student}, batch {args.batch_size}, {_hardware(device)}, torch "
          f"{torch.__version__}; the fixed preset here: {', '.join(f'{k}={v}' for k, v in context['preset'].items())}. "
          f"Each row: the median of {args.rounds} epoch(s) of {args.steps} steps timed as a run times its epochs "
          f"(after one of {args.warmup} untimed steps), synthetic data.")
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from fitnets.tools.bench import DEFAULT_PAIRS, bench_speed, format_speed_table
    from fitnets.training.distributed import resolve_device

    if min(args.batch_size, args.repeats) < 1:
        raise FitNetsError("--batch-size and --repeats must be ≥ 1")
    if bool(args.teacher) != bool(args.student):
        raise FitNetsError("give both --teacher and --student, or neither (the paper's pairs)")
    pairs = DEFAULT_PAIRS
    if args.teacher:
        pairs = {_timed(args.teacher, "--teacher").name: [_timed(s, "--student").name for s in args.student]}
    device = resolve_device(args.device)
    rows = bench_speed(pairs, args.batch_size, args.repeats, device)
    print(format_speed_table(rows))
    print(f"\n{_hardware(device)}, torch {torch.__version__}, batch {args.batch_size}, "
          f"median of {args.repeats} timed batches "
          "after 3 warm-up ones; paper's figures (Table 5, CIFAR-10, GPU) in parentheses.")
    return 0
