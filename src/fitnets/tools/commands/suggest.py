"""``fitnets suggest TEACHER STUDENT``: candidate (hint, guided) layer pairs, best first, optionally probed by a
few hint-stage steps each."""

from __future__ import annotations

import argparse

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import DATASETS_HELP, DEFAULT, DEVICE_HELP, MODEL_FORMS, model_input_shape


def add_parser(sub) -> None:
    p = sub.add_parser("suggest", help="candidate (hint, guided) layer pairs for a teacher and a student, best first")
    p.add_argument("teacher", help=f"{MODEL_FORMS}; trained weights are needed with --probe only")
    p.add_argument("student", help=f"{MODEL_FORMS}; weights are not needed")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the student's run folder's, else the "
                                         "student's, else the dataset's)")
    p.add_argument("--top", type=int, default=10, help="candidates shown")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="train N hint-stage steps for each of the top 5 and show the fit (R²) each reached")
    p.add_argument("--data", default=DEFAULT.data.name,
                   help=f"dataset of the probe, and of the input shape when the student has none: {DATASETS_HELP} "
                        "(default %(default)s)")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.add_argument("--train-size", type=int, default=5000, help="probe: training images")
    p.add_argument("--device", default=DEFAULT.device, help=DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.core.taps import dry_run
    from fitnets.models.registry import model_spec
    from fitnets.tools import suggest
    from fitnets.training.config import load_config
    from fitnets.training.distributed import resolve_device
    from fitnets.training.loading import ModelRef, input_shape, load_data, load_model
    from fitnets.training.speed import Speed
    from fitnets.training.teacher_outputs import frozen_teacher

    if args.top < 1 or args.probe < 0:
        raise FitNetsError("--top must be ≥ 1 and --probe ≥ 0")
    device = resolve_device(args.device)
    teacher_ref, student_ref = ModelRef.parse(args.teacher), ModelRef.parse(args.student)
    student_shape = model_input_shape(student_ref, args.input_shape)  # None: the dataset's (input_shape)
    config = load_config(None, [("student", student_ref.name), ("teacher", args.teacher), ("data.name", args.data),
                                ("data.dir", args.data_dir), ("data.train_size", args.train_size),
                                ("data.val_size", 1000), ("data.test_size", 1)]
                         + ([("input_shape", list(student_shape))] if student_shape else []))
    shape = input_shape(config)
    teacher = load_model(teacher_ref, trained=args.probe > 0).to(device).eval()
    student = load_model(student_ref).to(device)
    x = torch.zeros(2, *shape, device=device)
    with dry_run(teacher, x):
        teacher_layers = suggest.layers(teacher, x)
    with dry_run(student, x):
        student_layers = suggest.layers(student, x)
    candidates = suggest.rank(teacher_layers, student_layers)
    if not candidates:
        raise FitNetsError(f"no pair of {args.teacher}'s and {args.student}'s layers can be joined (no layer or "
                           "block outputs a map or a token sequence); name layers by hand (`fitnets layers`)")
    default = None
    teacher_spec, student_spec = model_spec(teacher_ref.name), model_spec(student_ref.name)
    if teacher_spec.hint and student_spec.guided:
        default = (teacher_spec.hint, student_spec.guided)
    shown = candidates[:args.top]
    if args.probe:
        data = load_data(config, device)
        frozen = frozen_teacher(teacher, Speed.of(config))  # wrapped as a run with this config wraps it
        suggest.probe(frozen, lambda: load_model(student_ref), shown[:5], data, args.probe,
                      progress=not args.no_progress)
    print(suggest.format_table(shown, default))
    if default is not None:
        at = next((i for i, c in enumerate(candidates, 1) if (c.hint.path, c.guided.path) == default), None)
        where = f"ranks #{at} of {len(candidates)}" if at else "cannot be joined by the rule"
        print(f"\nThe registry's default pair ({default[0]} → {default[1]}) {where}.")
    if args.probe:
        best = max((c for c in shown if c.fit is not None), key=lambda c: c.fit or 0.0)  # every fit here is a number
        print(f"Best fit after {args.probe} hint steps on {args.data}: {best.hint.path} → {best.guided.path} "
              f"(R² {best.fit:.3f}): --hint {best.hint.path} --guided {best.guided.path}")
    return 0
