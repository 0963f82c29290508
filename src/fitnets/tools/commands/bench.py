"""``fitnets bench speed`` (inference speed-up and compression over the teacher, the paper's Table 5) and
``fitnets bench step`` (training throughput of each step kind and speed option)."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import DEVICE_HELP, MODEL_FORMS, model_input_shape
from fitnets.training.loading import ModelRef

log = logging.getLogger("fitnets")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measurements: `bench speed` (inference, paper's Table 5), `bench step` (training)")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("speed", help="inference speed-up and compression of students over their teacher")
    p.add_argument("--teacher", help=f"teacher model: {MODEL_FORMS}; weights are not needed (default: the paper's "
                                     "CIFAR and MNIST teachers)")
    p.add_argument("--student", action="append", help="student model, in the same forms (repeatable)")
    p.add_argument("--batch-size", type=int, default=128, help="images per timed batch (default %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="timed batches per model (after 3 warm-up ones)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=run_speed)
    p = bench.add_parser("step", help="training throughput of each step kind and speed option, with ratios")
    p.add_argument("--teacher", default="paper-mnist-teacher",
                   help=f"teacher model: {MODEL_FORMS}; weights are not needed (default %(default)s)")
    p.add_argument("--student", default="paper-mnist-fitnet",
                   help="student model, in the same forms (default %(default)s)")
    p.add_argument("--hint", help="teacher layer (default: the registry's)")
    p.add_argument("--guided", help="student layer (default: the registry's)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step (default %(default)s)")
    p.add_argument("--input-shape", help="C,H,W (default: the student's run folder's, else the student's)")
    p.add_argument("--num-classes", type=int,
                   help="classes of the synthetic labels and of the models' outputs (default: the run folders' "
                        "model_args.num_classes, else 10)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--rounds", type=int, default=3, help="measure everything this many times, keep each best")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants (no compiler)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones (default %(default)s)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    p.set_defaults(func=run_step)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def _timed(spec: str, flag: str) -> ModelRef:
    """The model ``spec`` names, in any form ``ModelRef`` parses. A bench times an architecture, so the weights
    are not read; bench.py builds its models by registry name with ``num_classes`` only, so a run folder's other
    ``model_args`` (say a width) are left out, and said so."""
    ref = ModelRef.parse(spec)
    others = {k: v for k, v in ref.model_args.items() if k != "num_classes"}
    if others:
        log.warning("%s %s: timed as %s without its model_args %s", flag, spec, ref.name, others)
    return ref


def run_step(args: argparse.Namespace) -> int:
    from fitnets.tools.bench import bench_step
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
                              rounds=args.rounds, progress=not args.json)
    context = {"teacher": args.teacher, "student": args.student, "batch_size": args.batch_size,
               "device": _hardware(device), "torch": torch.__version__, "timed_steps": args.steps,
               "rounds": args.rounds}
    if args.json:
        print(json.dumps({**context, "rows": [r.__dict__ for r in rows], "ratios": ratios}, indent=2))
        return 0
    print("| step | images/s | notes |\n|---|---:|---|")
    for r in rows:
        print(f"| {r.name} | {r.images_per_s:,.0f} | {r.note} |")
    r = ratios
    print(f"\nFastest options with the teacher live and the student in fp32: {r['fastest_teacher_option']};"
          f" student {r['fastest_student_option']}"
          f"\nKD step, those options on / every option off:                  {r['kd_fast_over_baseline']:.2f}×"
          f"\nKD step, those options + bf16 student / every option off:      {r['kd_fast_bf16_over_baseline']:.2f}×"
          f"\nKD step with cached teacher, cost relative to a plain step:     {r['kd_cached_cost']:.2f}×"
          f"\nFitNet stage 1, cost relative to full forwards with every option off:"
          f"\n  cut forwards alone:                                           {r['stage1_cut_cost']:.2f}×"
          f"\n  cut forwards + fastest live teacher and student options:     {r['stage1_fast_cost']:.2f}×"
          f"\n  cut forwards + cached hints:                                  {r['stage1_cached_cost']:.2f}×"
          f"\nShare of a KD epoch spent producing augmented batches:         {100 * r['data_wait_share']:.1f}%"
          f"\nOn augmented batches (pad 4, flips), the teacher-output store filled:"
          f"\n  KD step reading the store, cost relative to a plain step:      {r['kd_store_cost']:.2f}×"
          f"\n  --fast KD step reading the store / plain fp32 student step:   {r['kd_fast_store_speedup']:.2f}×"
          f"\n  teacher forwards to build the store / a live 240-epoch run:   {r['store_build_share']:.2f}"
          f"\n\n{args.teacher} → {args.student}, batch {args.batch_size}, {_hardware(device)}, torch {torch.__version__},"
          f" median of {args.steps} timed steps after {args.warmup} warm-up ones, best of {args.rounds} round(s),"
          " synthetic data.")
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
    print(f"\n{_hardware(device)}, torch {torch.__version__}, batch {args.batch_size}, median of {args.repeats} timed batches "
          "after 3 warm-up ones; paper's figures (Table 5, CIFAR-10, GPU) in parentheses.")
    return 0
