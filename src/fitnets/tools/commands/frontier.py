"""``fitnets frontier --teacher T [CANDIDATE [KEY=V1,V2 ...] ...] [--grid KEY=V1,V2] ...``: which student? A
family of students trained against one teacher, the Pareto-optimal ones marked, the pick under the budget named
(``fitnets.tools.frontier``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import (
    MODEL_FORMS,
    add_run_flags,
    config_from_args,
    parse_seeds,
)

log = logging.getLogger("fitnets")


def add_parser(sub) -> None:
    p = sub.add_parser("frontier", help="which student? a family of students on the accuracy–speed frontier, the "
                                        "teacher paid once (pip install 'fitnets[frontier]')")
    p.add_argument("candidates", nargs="*", metavar="CANDIDATE",
                   help=f"a student ({MODEL_FORMS}), then its own KEY=V1,V2 arguments (a list: a grid over it)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a keyword argument of every candidate's factory, over these values (repeatable: the grid "
                        "is their product)")
    p.add_argument("--methods", default="fitnet", help="methods trained per candidate, e.g. fitnet,kd,ce "
                                                       "(default %(default)s)")
    p.add_argument("--frontier-seeds", type=int, default=0, metavar="N",
                   help="after the first pass, train the points on each method's frontier with N seeds (0,...,N-1)")
    p.add_argument("--jobs", type=int, default=1, help="trials trained at a time on this machine (worker processes)")
    p.add_argument("--storage", help="the study's storage: an RDB URL (postgresql://..., sqlite:///...) or a journal "
                                     "file (journal:PATH) that processes on other machines open too (default: a "
                                     "SQLite file in the frontier folder)")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="seconds between a worker's heartbeats; a trial silent for two is retried (RDB storages)")
    p.add_argument("--screen", type=int, default=0, metavar="STEPS",
                   help="rank the candidates first by a KD run of STEPS steps each (validation accuracy)")
    p.add_argument("--keep", type=int, help="with --screen: how many of the best go on to full training")
    p.add_argument("--trials", type=int, default=0, metavar="N",
                   help="instead of the whole grid, N trials chosen by a multi-objective sampler (NSGA-II: accuracy "
                        "up, latency down) over the first candidate's --grid values")
    p.add_argument("--min-speedup", type=float, help="budget: at least this speed-up over the teacher")
    p.add_argument("--max-params", type=int, help="budget: at most this many parameters")
    p.add_argument("--max-macs", type=float, help="budget: at most this many multiply-accumulates per example")
    p.add_argument("--max-latency-ms", type=float, help="budget: at most this latency per batch (ms)")
    p.add_argument("--pick-speedup", type=float, metavar="X",
                   help="name the most accurate student at ≥ X× the teacher's speed, training the slower ones too "
                        "(default: --min-speedup)")
    p.add_argument("--bench-batch", type=int, default=128, help="examples per timed forward (default %(default)s)")
    p.add_argument("--bench-repeats", type=int, default=10, help="timed forwards per model (after 3 warm-up ones)")
    p.add_argument("--no-figure", action="store_true", help="no frontier.png")
    add_run_flags(p, True)
    p.set_defaults(func=run)


def _refuse_run_only(args: argparse.Namespace) -> None:
    for flag, value, fix in (("--student", args.student, "name candidates as positional arguments"),
                             ("--method", args.method, "use --methods M1,M2"),
                             ("--seed", args.seed, "use --seeds N or --seeds 0,3"),
                             ("--resume", args.resume, "run the same frontier command again: it continues")):
        if value is not None:
            raise FitNetsError(f"fitnets frontier does not take {flag}: {fix}")


def run(args: argparse.Namespace) -> int:
    from fitnets.tools.frontier import api
    from fitnets.tools.frontier.facts import Budget
    from fitnets.training.recipes import METHODS

    _refuse_run_only(args)
    if not args.teacher:
        raise FitNetsError("give the trained teacher: --teacher NAME (or NAME:PATH, RUN_DIR)")
    if min(args.jobs, args.heartbeat, args.keep or 1) < 1 or min(args.screen, args.trials, args.frontier_seeds) < 0:
        raise FitNetsError("--jobs, --heartbeat and --keep must be ≥ 1; --screen, --trials and --frontier-seeds ≥ 0")
    if args.keep and not args.screen:
        raise FitNetsError("--keep goes with --screen STEPS (the screen ranks the candidates it keeps)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise FitNetsError(f"unknown method {unknown[0] if unknown else args.methods!r} in --methods; methods: "
                           f"{', '.join(METHODS)}")
    config = config_from_args(args)
    config.teacher = args.teacher
    budget = Budget(args.min_speedup, args.max_params, int(args.max_macs) if args.max_macs else None,
                    args.max_latency_ms)
    folder = Path(args.out or "runs") / (args.name or "frontier")
    frontier = api.frontier_from(config, args.candidates, grids=args.grid, methods=methods,
                                 seeds=parse_seeds(args.seeds) if args.seeds else [0], folder=folder, budget=budget,
                                 screen=args.screen, keep=args.keep, trials=args.trials, jobs=args.jobs,
                                 storage=args.storage, heartbeat=args.heartbeat, bench_batch=args.bench_batch,
                                 bench_repeats=args.bench_repeats, progress=not args.no_progress,
                                 figure=not args.no_figure, frontier_seeds=args.frontier_seeds,
                                 pick_speedup=args.pick_speedup)
    if args.dry_run:
        print(api.plan(frontier))
        return 0
    _, table = api.run(frontier)
    print(table)
    print(f"\nwritten: {folder / 'frontier.md'}, frontier.json" + ("" if args.no_figure else ", frontier.png"))
    return 0
