"""Your data through the engine, measured on Fashion-MNIST (the images the project's machine has).

The images are wrapped in a plain ``torch.utils.data.Dataset`` (uint8 tensors, ``(image, label)`` items) and
handed to ``fitnets.distill`` / ``fitnets.train`` like any user's data: read through a DataLoader, each item
augmented in the workers under its (seed, epoch, index) seed.

``--part speed``: the Dataset path against the in-memory path (``--data fashion-mnist``) on the same images and
augmentation — a KD epoch's ``images_per_s`` and ``data_wait_share`` from each run's metrics, teacher live in
both (``store.enabled=false``), for pad-flip and random-resized-crop.

``--part accuracy``: the demo's protocol (20,000 training images, 6 epochs, FitNets 2 hint + 6; lr 0.002) with
random-resized-crop (scale 0.5–1, flips; evaluation on the whole image, ``data.eval_crop=1``), 3 seeds each of
backprop, KD and FitNets, the paper's MNIST pair; then ``fitnets report`` over the run folders.

    python benchmarks/your_data.py --part speed --workers 0,2 --repeats 2 --out runs/your-data
    python benchmarks/your_data.py --part accuracy --out runs/your-data
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import fitnets
from fitnets.data.loader import load_idx_dataset

PAIR = ("paper-mnist-teacher", "paper-mnist-fitnet")
RRC = {"data.augment": "random-resized-crop", "data.crop_scale": [0.5, 1.0], "data.flip": True, "data.eval_crop": 1.0}
PAD_FLIP = {"data.augment": "pad-flip", "data.pad": 2, "data.flip": True}


class FashionMNIST(torch.utils.data.Dataset):
    """Fashion-MNIST as a user would wrap it: ``(uint8 image (1, 28, 28), label)`` items."""

    def __init__(self, split: str):
        data = load_idx_dataset("fashion-mnist", split)
        self.images, self.labels = data.images, data.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def last_row(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def speed(out: Path, workers: list[int], train_size: int, repeats: int, augmentations: list[str]) -> list[dict]:
    """Each (augmentation, path) in turn, the whole round ``repeats`` times, so that a change in the machine's
    load falls on every path alike; the load average is printed beside each run (the machine is shared)."""
    rows = []
    common = {"data.train_size": train_size, "data.test_size": 1000, "store.enabled": False, "log_every": 1000}
    paths = [("in-memory", 0)] + [(f"Dataset, {w} workers", w) for w in workers]
    for repeat in range(repeats):
        for aug_name in augmentations:
            aug = {"pad-flip": PAD_FLIP, "random-resized-crop": RRC}[aug_name]
            for path, w in paths:
                name = f"speed-{aug_name}-{path.replace(', ', '-').replace(' ', '')}-{repeat}"
                overrides = {**common, **aug, "data.workers": w}
                load = os.getloadavg()[0]
                start = time.perf_counter()
                if path == "in-memory":
                    config = fitnets.load_config(None, [("method", "kd"), ("epochs", 2), ("out", str(out)),
                                                        ("name", name), *overrides.items()])
                    fitnets.Run(config, progress=False).execute()
                else:
                    fitnets.distill(*PAIR, FashionMNIST("train"), test=FashionMNIST("test"), method="kd", epochs=2,
                                    out=str(out), name=name, progress=False, overrides=overrides)
                row = last_row(out / name)  # the second epoch: workers and caches warm
                rows.append({"augmentation": aug_name, "path": path, "repeat": repeat,
                             "images_per_s": row["images_per_s"], "data_wait_share": row["data_wait_share"],
                             "run_s": round(time.perf_counter() - start, 1), "load_before": load,
                             "load_after": os.getloadavg()[0]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def accuracy(out: Path, workers: int, seeds: int) -> None:
    train, test = FashionMNIST("train"), FashionMNIST("test")
    common = {"data.train_size": 20_000, "data.workers": workers, "optim.lr": 0.002, "hint_stage.optim.lr": 0.002,
              **RRC}
    for seed in range(seeds):
        for method in ("ce", "kd", "fitnet"):
            name = f"acc-{method}-seed{seed}"
            start = time.perf_counter()
            if method == "ce":
                r = fitnets.train(PAIR[1], train, test=test, epochs=6, seed=seed, out=str(out), name=name,
                                  progress=False, overrides=common)
            else:
                r = fitnets.distill(*PAIR, train, test=test, method=method, epochs=6, hint_epochs=2, seed=seed,
                                    out=str(out), name=name, progress=False, overrides=common)
            print(json.dumps({"method": method, "seed": seed, "test_acc": r["test_acc"],
                              "run_s": round(time.perf_counter() - start, 1)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["speed", "accuracy"], required=True)
    p.add_argument("--out", default="runs/your-data")
    p.add_argument("--workers", default="2", help="DataLoader workers (speed: a comma list, each a path)")
    p.add_argument("--train-size", type=int, default=20_000, help="speed: training images")
    p.add_argument("--repeats", type=int, default=1, help="speed: rounds over every path, interleaved")
    p.add_argument("--augment", default="pad-flip,random-resized-crop", help="speed: a comma list")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    out = Path(args.out)
    workers = [int(w) for w in args.workers.split(",")]
    if args.part == "speed":
        speed(out, workers, args.train_size, args.repeats, args.augment.split(","))
    else:
        accuracy(out, workers[0], args.seeds)


if __name__ == "__main__":
    main()
