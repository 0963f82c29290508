"""``fitnets diagnose RUN_DIR``: what a run's student holds at its guided layer, measured without a regressor —
the held-out accuracy of a linear probe of the labels on the guided features and their linear CKA with the
teacher's hint, on the run's validation split; ``--init`` measures the student as the run's seed initialised
it, before any training. The two ends of the scale for stage 1's per-epoch diagnostics
(``--hint-diagnostics``): a random student, and a student trained without hints (a ``ce`` or ``kd`` run)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("diagnose", help="linear probe and CKA with the hint at a run's guided layer")
    p.add_argument("run_dir", help="a run folder (any method; its config names the student, data and seed)")
    p.add_argument("--init", action="store_true", help="the student as the run's seed initialised it, untrained "
                   "(batch-norm statistics as initialised too; a --regressor-first run's frozen first hint epoch "
                   "measures it with statistics from the data)")
    p.add_argument("--teacher", help="the teacher whose hint to compare with (default: the run's)")
    p.add_argument("--hint", help="teacher module path of the hint layer (default: the run's, else the registry's)")
    p.add_argument("--guided", help="student module path of the guided layer (default: the run's, else the "
                                    "registry's)")
    p.add_argument("--examples", type=int, default=1000, help="validation examples measured (default 1000)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fitnets.checkpoint import load_weights
    from fitnets.errors import FitNetsError
    from fitnets.training.config import load_config
    from fitnets.training.evaluate import first_features, representation_fit
    from fitnets.training.loading import config_of_run
    from fitnets.training.run import Run

    folder = Path(args.run_dir)
    saved = config_of_run(folder)
    teacher = args.teacher or saved.teacher
    if not teacher:
        raise FitNetsError(f"the run in {folder} names no teacher: give one with --teacher")
    if args.examples < 8:
        raise FitNetsError(f"--examples must be at least 8, got {args.examples}")
    pairs = [("method", "fitnet"), ("teacher", teacher), ("hint", args.hint or saved.hint),
             ("guided", args.guided or saved.guided)] + ([("device", args.device)] if args.device else [])
    config = load_config(None, pairs, base=saved)
    trained = folder / "student.safetensors"
    if not args.init and not trained.is_file():
        raise FitNetsError(f"{folder} has no student.safetensors (the run has not finished): give --init for the "
                           "untrained student, or finish the run")
    measured = Run(config, folder, progress=False)  # the student as the run's seed initialises it
    data = measured.load_data()
    measured.build(data)
    if not len(data.val):
        raise FitNetsError(f"the run in {folder} holds out no validation data (data.val_size 0): nothing to measure on")
    if not args.init:
        load_weights(measured.student, trained)
    fitnet = measured.fitnet
    assert fitnet is not None  # the config above is a FitNets run's
    features = first_features(fitnet, data.val, args.examples, config.data.eval_batch_size, measured.inputs)
    result = representation_fit(*features, data.val.num_classes)
    out = {"run": str(folder), "student": "initialised" if args.init else "trained", "hint": fitnet.hint,
           "guided": fitnet.guided, "examples": min(args.examples, len(data.val)),
           **{key: result[key] for key in ("guided_probe_acc", "hint_probe_acc", "cka")}}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{folder} ({out['student']} student), guided {out['guided']} vs hint {out['hint']} on "
              f"{out['examples']} validation examples: linear probe {out['guided_probe_acc']:.4f} (the teacher's "
              f"hint: {out['hint_probe_acc']:.4f}), linear CKA with the hint {out['cka']:.4f}")
    return 0
