"""``fitnets store build | list | clear``: the teacher-output store that KD under augmentation reads."""

from __future__ import annotations

import argparse
import logging

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import add_run_flags, config_from_args

log = logging.getLogger("fitnets")


def add_parser(sub) -> None:
    p = sub.add_parser("store", help="the teacher-output store (KD under augmentation): build, list, clear")
    store = p.add_subparsers(dest="store_command", required=True)
    p = store.add_parser("build", help="fill the store a run would use (the run's config and flags), every view of "
                                       "every example")
    add_run_flags(p, True)
    p.set_defaults(func=run_build)
    p = store.add_parser("list", help="the stores in the cache folder ($FITNETS_CACHE, default ~/.cache/fitnets)")
    p.set_defaults(func=run_list)
    p = store.add_parser("clear", help="delete every store, or the one whose key starts with KEY")
    p.add_argument("key", nargs="?", help="a store's key (or its first characters), as `fitnets store list` shows")
    p.set_defaults(func=run_clear)


def run_list(_args: argparse.Namespace) -> int:
    from fitnets.training import store

    found = store.list_stores()
    if not found:
        print(f"no teacher-output stores in {store.stores_dir()}")
        return 0
    print("| key | teacher | data | examples × views | classes | dtype | size | filled | created |\n"
          "|---|---|---|---:|---:|---|---:|---:|---|")
    for info in found:
        m = info.meta
        if m.get("damaged"):
            print(f"| {info.path.name} | damaged (rebuilt when a run next uses it; or `fitnets store clear "
                  f"{info.path.name}`) | | | | | | | |")
            continue
        print(f"| {info.path.name} | {m.get('teacher', '?')} | {m.get('data', '?')} | {m['examples']:,} × "
              f"{m['views']} | {m['width']} | {m['dtype']} | {store.human_size(info.size_bytes)} | "
              f"{100 * info.filled / max(info.slots, 1):.1f}% | {m.get('created', '?')} |")
    print(f"\nin {store.stores_dir()}")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from fitnets.training import store

    removed = store.clear_stores(key=args.key)
    print(f"deleted {len(removed)} store(s) from {store.stores_dir()}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from fitnets.training import distributed
    from fitnets.training.recipes import METHODS
    from fitnets.training.run import Run
    from fitnets.training.store import DRAWN_NOT_AHEAD, StoredOutputs, StoreRefused, fill, human_size
    from fitnets.training.teacher_outputs import store_layout

    config = config_from_args(args)
    if not METHODS[config.method].logits:
        raise FitNetsError(f"method {config.method} reads no teacher logits: there is nothing to store")
    run = Run(config, progress=not args.no_progress)
    data = run.load_data()
    layout, why = store_layout(config, data.train)  # the rule the run's own teacher_source follows
    if layout is None:
        raise FitNetsError(f"this run reads no teacher-output store: {why}")
    if layout:
        raise StoreRefused(DRAWN_NOT_AHEAD)
    stages = run.build(data)
    outputs = next(t for stage in stages for t in stage.teachers if isinstance(t, StoredOutputs))
    views, n, epochs = outputs.aug.views, len(data.train), config.epochs
    log.info("store build: %s examples × %d views = %s teacher forwards; a live run of %d KD epochs spends %s, so "
             "building pays off once the runs that read the store train more than %d KD epochs in all",
             f"{n:,}", views, f"{n * views:,}", epochs, f"{n * epochs:,}", views)
    if args.dry_run:
        print(f"would fill {n * views:,} slots ({human_size(outputs.size_bytes())})")
        return 0
    done, total = fill(outputs, config.data.eval_batch_size, progress=not args.no_progress)
    if distributed.current().enabled:  # every rank's views written before the count
        import torch.distributed as dist

        dist.barrier()
    if distributed.current().is_main:
        slots = outputs.slots
        assert slots is not None  # fill() opened them
        print(f"store {slots.path}: {slots.filled():,} of {total:,} slots filled ({done:,} now by "
              f"{'this process' if not distributed.current().enabled else 'rank 0'})")
    return 0
