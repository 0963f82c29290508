"""Wall-clock of KD runs under the CIFAR augmentation with and without the teacher-output store.

The CIFAR-100 resnet56 → resnet20 KD config's protocol (SGD, batch 64, pad-4 crops and flips: 162 views per
example), on synthetic CIFAR-shaped data (random pixels, random labels; an untrained resnet56 as the teacher:
the time per step does not depend on what the weights are), shortened to a few thousand images and a few
epochs. Four runs, each timed from start to end (training, validation-free as in the config, the test pass):

1. live: the store switched off (``store.enabled=false``), as every run was before the store;
2. first seed: an empty store, filled as the run goes;
3. second seed (another seed, so other views): reads what the first one stored, fills the rest;
4. after ``fitnets store build`` (timed on its own): every view stored, the teacher never runs.

    python benchmarks/store_wallclock.py --images 2000 --epochs 4 --threads 1

Prints a Markdown table and the hit rates per epoch; ``--json`` writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from fitnets.checkpoint import save_checkpoint
from fitnets.data.loader import ImageData
from fitnets.models.registry import create_model
from fitnets.training.config import load_config
from fitnets.training.loading import Data
from fitnets.training.run import Run
from fitnets.training.store import StoredOutputs, fill

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar100" / "resnet56-resnet20-kd.yaml"


def synthetic(n: int, seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 100, (n,), generator=g), 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="fitnets-store-wallclock-"))
    torch.manual_seed(0)
    teacher = work / "resnet56.safetensors"
    save_checkpoint(teacher, create_model("resnet56", num_classes=100).state_dict(), {"model": "resnet56"})
    data = Data(synthetic(args.images, 0), synthetic(0, 1), synthetic(500, 2))

    def config(name: str, seed: int, cache: str, *extra):
        return load_config(CONFIG, [("teacher", f"resnet56:{teacher}"), ("epochs", args.epochs), ("seed", seed),
                                    ("device", "cpu"), ("out", str(work / "runs")), ("name", name),
                                    ("store.dir", str(work / cache)), *extra])

    rows = []

    def timed(label: str, cfg) -> None:
        start = time.perf_counter()
        Run(cfg, progress=False).execute(data=data)
        seconds = time.perf_counter() - start
        metrics = [json.loads(line) for line in (work / "runs" / cfg.name / "metrics.jsonl").read_text().splitlines()]
        rows.append({"run": label, "seconds": seconds, "hit_rates": [m.get("store_hit_rate") for m in metrics]})
        print(f"{label}: {seconds:.1f} s", file=sys.stderr)

    # Untimed: the process's first run pays one-off costs (thread pools, kernel selection) the others would not.
    Run(config("warm-up", 0, "unused", ("store.enabled", False), ("epochs", 1)), progress=False).execute(data=data)
    timed("live (store off)", config("live", 0, "unused", ("store.enabled", False)))
    timed("first seed, filling the store", config("first", 0, "cache-a"))
    timed("second seed, reading it", config("second", 1, "cache-a"))
    build_cfg = config("built", 0, "cache-b")
    start = time.perf_counter()
    run = Run(build_cfg, progress=False)
    store = next(t for stage in run.build(data) for t in stage.teachers if isinstance(t, StoredOutputs))
    fill(store, build_cfg.data.eval_batch_size, progress=False)
    build_s = time.perf_counter() - start
    rows.append({"run": "fitnets store build", "seconds": build_s, "hit_rates": []})
    timed("after store build", build_cfg)

    live = rows[0]["seconds"]
    views = 162
    print(f"\n| run | wall-clock (s) | × live | store hit rate per epoch |\n|---|---:|---:|---|")
    for r in rows:
        rates = ", ".join(f"{100 * h:.0f}%" for h in r["hit_rates"] if h is not None) or "—"
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['seconds'] / live:.2f} | {rates} |")
    print(f"\n{args.images:,} synthetic 3×32×32 images, {args.epochs} epochs, batch 64, pad 4 + flips ({views} views), "
          f"500 test images; resnet56 → resnet20, {torch.get_num_threads()} thread(s), torch {torch.__version__}.")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": args.images, "epochs": args.epochs,
                                               "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
