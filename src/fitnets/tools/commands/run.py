"""``fitnets train``, ``fitnets distill`` and ``fitnets run FILE``: one or more runs from the config and flags."""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import add_run_flags, config_from_args, parse_seeds
from fitnets.training.methods import METHODS

log = logging.getLogger("fitnets")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a network with cross-entropy (e.g. a teacher)")
    add_run_flags(p, False)
    p.set_defaults(func=run, method="ce")  # train is method ce, over any config file or --set
    p = sub.add_parser("distill", help=f"train a student by one of the methods: {', '.join(METHODS)} (--method)")
    add_run_flags(p, True)
    p.set_defaults(func=run)
    p = sub.add_parser("run", help="run an experiment file: fitnets run FILE [flags] = fitnets distill --config FILE")
    p.add_argument("file", help="YAML or TOML experiment file (see configs/)")
    add_run_flags(p, True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.training.run import Run

    if getattr(args, "file", None):
        if args.config:
            raise FitNetsError("give the experiment file once: `fitnets run FILE` or `fitnets distill --config FILE`")
        args.config = args.file
    config = config_from_args(args)
    if args.seeds and args.resume:
        raise FitNetsError("--seeds starts new runs; resume each run folder on its own with --resume")
    configs = [config]
    if args.seeds:
        configs = []
        for seed in parse_seeds(args.seeds):
            seeded = copy.deepcopy(config)
            seeded.seed = seed
            seeded.name = f"{config.name}-seed{seed}" if config.name else None
            if configs and seeded.fast.mode == "retune":
                seeded.fast.mode = "tune"  # measured again once, by the first seed; the others reuse its choice
            configs.append(seeded)
    for config in configs:
        run = Run(config, run_dir=Path(args.resume) if args.resume else None, progress=not args.no_progress)
        data, resume = run.load_data(), bool(args.resume)
        if args.dry_run:  # nothing measured, nothing trained
            print(run.plan(data, resume=resume, measure=False))
            continue
        log.info("plan:\n%s", run.plan(data, resume=resume))  # built once: execute trains these very stages
        try:
            results = run.execute(resume=resume, data=data)
        except KeyboardInterrupt:
            if (run.run_dir / "last.safetensors").is_file():
                print(f"interrupted; the last finished epoch is saved. Continue with: fitnets "
                      f"{args.command if args.command != 'run' else 'distill'} --resume {run.run_dir}",
                      file=sys.stderr)
            else:
                print("interrupted before the first epoch finished: nothing was saved; start the run again",
                      file=sys.stderr)
            return 130
        print(f"{results['method']} {results['student']} seed {config.seed}: test accuracy "
              f"{results['test_acc']:.4f} ({results['train_time_s']:.0f}s); run folder {run.run_dir}")
    return 0
