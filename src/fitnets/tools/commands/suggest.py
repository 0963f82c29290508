"""``fitnets suggest TEACHER STUDENT``: candidate (hint, guided) layer pairs, best first, optionally probed by a
few hint-stage steps each."""

from __future__ import annotations

import argparse

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import DATASETS_HELP, DEVICE_HELP, parse_shape


def add_parser(sub) -> None:
    p = sub.add_parser("suggest", help="candidate (hint, guided) layer pairs for a teacher and a student, best first")
    p.add_argument("teacher", help="NAME, NAME:PATH, RUN_DIR or package.module:factory[:PATH]")
    p.add_argument("student", help="registered model name or package.module:factory")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the student's, else the dataset's)")
    p.add_argument("--top", type=int, default=10, help="candidates shown")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="train N hint-stage steps for each of the top 5 and show the fit (R²) each reached")
    p.add_argument("--data", default="fashion-mnist",
                   help=f"dataset of the probe, and of the input shape when the student has none: {DATASETS_HELP} "
                        "(default %(default)s)")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.add_argument("--train-size", type=int, default=5000, help="probe: training images")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.models.registry import create_model, model_spec
    from fitnets.tools import suggest
    from fitnets.training.config import load_config
    from fitnets.training.distributed import resolve_device
    from fitnets.training.loading import ModelRef, input_shape, load_data, load_model

    if args.top < 1 or args.probe < 0:
        raise FitNetsError("--top must be ≥ 1 and --probe ≥ 0")
    device = resolve_device(args.device)
    config = load_config(None, [("student", args.student), ("teacher", args.teacher), ("data.name", args.data),
                                ("data.dir", args.data_dir), ("data.train_size", args.train_size),
                                ("data.val_size", 1000), ("data.test_size", 1)]
                         + ([("input_shape", list(parse_shape(args.input_shape)))] if args.input_shape else []))
    shape = input_shape(config)
    teacher = load_model(args.teacher, trained=args.probe > 0).to(device).eval()
    student = create_model(args.student).to(device)
    x = torch.zeros(2, *shape, device=device)
    candidates = suggest.rank(suggest.layers(teacher, x), suggest.layers(student, x))
    if not candidates:
        raise FitNetsError(f"no pair of {args.teacher}'s and {args.student}'s layers can be joined (no map or token "
                           "outputs at the top two levels of the module tree); name layers by hand (`fitnets layers`)")
    default = None
    teacher_spec, student_spec = (model_spec(ModelRef.parse(args.teacher).name), model_spec(args.student))
    if teacher_spec.hint and student_spec.guided:
        default = (teacher_spec.hint, student_spec.guided)
    shown = candidates[:args.top]
    if args.probe:
        data = load_data(config, device)
        suggest.probe(teacher, lambda: create_model(args.student), shown[:5], data, args.probe,
                      progress=not args.no_progress)
    print(suggest.format_table(shown, default))
    if default is not None:
        at = next((i for i, c in enumerate(candidates, 1) if (c.hint.path, c.guided.path) == default), None)
        where = f"ranks #{at} of {len(candidates)}" if at else "cannot be joined by the rule"
        print(f"\nThe registry's default pair ({default[0]} → {default[1]}) {where}.")
    if args.probe:
        best = max((c for c in shown if c.fit is not None), key=lambda c: c.fit)
        print(f"Best fit after {args.probe} hint steps on {args.data}: {best.hint.path} → {best.guided.path} "
              f"(R² {best.fit:.3f}): --hint {best.hint.path} --guided {best.guided.path}")
    return 0
