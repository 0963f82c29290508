"""What ``--hint-diagnostics`` costs a hint epoch: the validation of stage 1 (hint loss and R² over the whole
validation split) timed without and with the probe and CKA on N examples, on the pairs of
benchmarks/regressor_question.sh, against the time of one hint epoch of those runs (read from their
metrics.jsonl, which were trained with diagnostics on: their epoch times exclude validation).

    OMP_NUM_THREADS=1 python benchmarks/diagnostics_cost.py runs/regressor-question [--rounds 3] [--examples 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fitnets.training.config import load_config
from fitnets.training.evaluate import HintEval
from fitnets.training.loading import config_of_run
from fitnets.training.run import Run


def timed(evaluate: HintEval, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the folder of benchmarks/regressor_question.sh's runs")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--examples", type=int, default=1000)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.rounds} rounds\n")
    print("| pair | hint epoch (train) | validation, no diagnostics | validation + probe and CKA | extra per hint "
          "epoch |")
    print("|---|---:|---:|---:|---:|")
    for pair in ("mnist-pair", "resnet-pair"):
        folder = args.out / f"{pair}-paper-seed0"
        config = load_config(None, [("name", "diagnostics-cost"), ("out", str(args.out / "tmp"))],
                             base=config_of_run(folder))
        run = Run(config, progress=False)
        data = run.load_data()
        run.build(data)
        plain = HintEval(run.fitnet, data.val, config.data.eval_batch_size, run.inputs)
        with_diagnostics = HintEval(run.fitnet, data.val, config.data.eval_batch_size, run.inputs, args.examples)
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        epoch = statistics.median(r["epoch_time_s"] for r in rows if r["stage"] == "hint")
        base, full = timed(plain, args.rounds), timed(with_diagnostics, args.rounds)
        print(f"| {pair} | {epoch:.1f} s | {base:.2f} s | {full:.2f} s | "
              f"+{100 * (full - base) / (epoch + base):.1f}% |")


if __name__ == "__main__":
    main()
