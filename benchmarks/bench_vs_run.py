"""Does `fitnets bench step` agree with what a run logs? Runs and the bench, back to back, each in its own process.

For each step of the bench's default table, a short run on real Fashion-MNIST (the MNIST pair, batch 128, 5,000
training images, the defaults) trains it, and its `metrics.jsonl` gives the `images_per_s` of its last epoch
(the first pays the warm-up; the bench warms up too); right before or after it (the order alternates by round),
`fitnets bench step --only STEP --json` measures the same step on synthetic data. On a shared machine the load
moves within minutes, so each run is paired with the bench measured next to it: the script prints each pair,
then per step the medians over `--rounds` rounds and the median of the pairs' bench / run.

    python benchmarks/bench_vs_run.py --rounds 5                    # torch's default threads
    OMP_NUM_THREADS=1 python benchmarks/bench_vs_run.py --rounds 5  # one thread each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SMALL = ["--data", "fashion-mnist", "--train-size", "5000", "--val-size", "1000", "--set", "data.test_size=1000",
         "--batch-size", "128", "--no-progress"]
AUG = ["--set", "data.pad=4", "--set", "data.flip=true"]
# bench row -> (the run's arguments, its stage whose last epoch is read); runs listed twice fill the store first
STEPS = {
    "CE step (defaults)": (["train", "--epochs", "2"], "main"),
    "KD step, teacher logits cached (defaults)": (["distill", "--method", "kd", "--epochs", "2"], "main"),
    "FitNet stage 1, cut, hints cached (defaults)": (["distill", "--method", "fitnet", "--hint-epochs", "2",
                                                      "--epochs", "1"], "hint"),
    "CE step, augmented batches (defaults)": (["train", "--epochs", "2", *AUG], "main"),
    "KD step, teacher live (no store), augmented batches (defaults)": (["distill", "--method", "kd", "--epochs", "2",
                                                                        *AUG, "--set", "store.enabled=false"], "main"),
    # the same seed draws the same views: the second run finds every one of them stored
    "KD step, teacher-output store, augmented batches (defaults)": (["distill", "--method", "kd", "--epochs", "2",
                                                                     *AUG], "main"),
}


def fitnets(*argv: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-m", "fitnets", *argv], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"fitnets {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def run_rate(argv: list[str], stage: str, out: Path, name: str, env: dict, times: int = 1) -> float:
    for i in range(times):
        fitnets(*argv, *SMALL, "--out", str(out), "--name", f"{name}-{i}", env=env)
    rows = [json.loads(line) for line in (out / f"{name}-{times - 1}" / "metrics.jsonl").read_text().splitlines()]
    last = [row for row in rows if row["stage"] == stage][-1]
    if "store_hit_rate" in last and last["store_hit_rate"] < 1:
        sys.exit(f"{name}: the store answered only {last['store_hit_rate']:.0%} of the lookups")
    return last["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench-rounds", type=int, default=1, help="the bench's --rounds (epochs per row)")
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {step: {"run": [], "bench": []} for step in STEPS}
    with tempfile.TemporaryDirectory(prefix="bench-vs-run-") as tmp:
        env = {**os.environ, "FITNETS_CACHE": str(Path(tmp) / "cache")}  # a store of this script's own
        for r in range(args.rounds):
            for i, (step, (argv, stage)) in enumerate(STEPS.items()):
                times = 2 if "store" in step and "no store" not in step else 1
                run = lambda: run_rate(argv, stage, Path(tmp) / f"round{r}", f"step{i}", env, times)  # noqa: E731
                bench = lambda: json.loads(fitnets("bench", "step", "--batch-size", "128", "--json", "--only", step,  # noqa: E731
                                                   "--rounds", str(args.bench_rounds), env=env))
                if r % 2:
                    result, rate = bench(), run()
                else:
                    rate, result = run(), bench()
                figures[step]["run"].append(rate)
                figures[step]["bench"].append(next(row["images_per_s"] for row in result["rows"]
                                                   if row["name"] == step))
                print(f"round {r + 1}, {step}: run {rate:,.0f}, bench {figures[step]['bench'][-1]:,.0f}", flush=True)
    print(f"\n{result['device']}, torch {result['torch']}, {args.rounds} round(s); images/s, medians over the rounds\n")
    print("| step | run (last epoch) | bench | bench / run, median of the pairs (range) |\n|---|---:|---:|---:|")
    for step, f in figures.items():
        ratios = [b / r for b, r in zip(f["bench"], f["run"])]
        print(f"| {step} | {statistics.median(f['run']):,.0f} | {statistics.median(f['bench']):,.0f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
