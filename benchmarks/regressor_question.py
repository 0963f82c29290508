"""The tables of benchmarks/regressor_question.sh from its run folders: per pair and way of training, mean ± std
over seeds of the hint fit (R²), the linear probe's accuracy on the guided features and their linear CKA with the
teacher's hint — at the end of stage 1 for the FitNets runs (the weights stage 1 selected), after training for
the kd and ce students; for the untrained student, the regressor-only runs' first hint epoch (the student's
weights as the seed made them, its batch-norm statistics, in train mode, from that epoch's data) — and the final
test accuracy; then CKA and probe per hint epoch.

    python benchmarks/regressor_question.py runs/regressor-question
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

PAIRS = {"mnist-pair": "the paper's MNIST pair (paper-mnist-teacher → paper-mnist-fitnet)",
         "resnet-pair": "resnet56 → resnet20, 1-channel 28×28"}
WAYS = [("init", "untrained student (weights as the seed makes them)"),
        ("paper", "**FitNets, the paper's joint stage 1**"),
        ("regressor-first-1", "regressor first for 1 epoch, then joint for 2"),
        ("regressor-only", "regressor only, all 3 hint epochs (student never hinted)"),
        ("kd", "KD alone, no hint stage"),
        ("ce", "standard backprop (no teacher)")]


def spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def measures(out: Path, pair: str, way: str) -> list[dict]:
    """One dict per seed: r2, probe, hint_probe, cka, test (None where the way has no such figure)."""
    rows = []
    source = "regressor-only" if way == "init" else way
    for folder in sorted(out.glob(f"{pair}-{source}-seed*")):
        results = read(folder / "results.json")
        lines = (folder / "metrics.jsonl").read_text().splitlines() if (folder / "metrics.jsonl").is_file() else []
        if not results and not (way == "init" and lines):
            continue  # unfinished (the script resumes it when run again)
        if way == "init":
            first = json.loads(lines[0])
            rows.append({"r2": None, "probe": first.get("val_guided_probe_acc"), "cka": first.get("val_cka"),
                         "hint_probe": first.get("val_hint_probe_acc"), "test": None})
        elif way in ("kd", "ce"):
            d = read(folder / "diagnose.json")
            rows.append({"r2": None, "probe": d.get("guided_probe_acc"), "hint_probe": d.get("hint_probe_acc"),
                         "cka": d.get("cka"), "test": results.get("test_acc")})
        else:
            hint = results["stages"]["hint"]
            rows.append({"r2": hint.get("val_hint_r2"), "probe": hint.get("val_guided_probe_acc"),
                         "hint_probe": hint.get("val_hint_probe_acc"), "cka": hint.get("val_cka"),
                         "test": results.get("test_acc")})
    return rows


def per_epoch(out: Path, pair: str, way: str, key: str) -> str:
    """Mean over seeds of ``key`` at each hint epoch."""
    by_epoch: dict[int, list[float]] = {}
    for folder in sorted(out.glob(f"{pair}-{way}-seed*")):
        if not (folder / "results.json").is_file():
            continue
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["stage"] == "hint" and key in row:
                by_epoch.setdefault(row["epoch"], []).append(row[key])
    return ", ".join(f"{statistics.mean(v):.3f}" for _, v in sorted(by_epoch.items())) or "—"


def main(out: Path) -> None:
    for pair, title in PAIRS.items():
        print(f"### {title}\n")
        print("| stage 1 / student | hint R² | probe acc (guided) | CKA with the hint | test acc % | seeds |")
        print("|---|---:|---:|---:|---:|---:|")
        hint_probe = []
        for way, label in WAYS:
            rows = measures(out, pair, way)
            hint_probe += [r["hint_probe"] for r in rows if r["hint_probe"] is not None]
            print(f"| {label} | {spread([r['r2'] for r in rows])} | {spread([r['probe'] for r in rows])} | "
                  f"{spread([r['cka'] for r in rows])} | {spread([r['test'] for r in rows], 100, 2)} | {len(rows)} |")
        print(f"\nThe teacher's hint itself: probe accuracy {spread(hint_probe)}.\n")
        print("Per hint epoch (mean over seeds), CKA with the hint; probe accuracy:\n")
        for way, label in WAYS[1:4]:
            print(f"- {label.strip('*')}: CKA {per_epoch(out, pair, way, 'val_cka')}; probe "
                  f"{per_epoch(out, pair, way, 'val_guided_probe_acc')}")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/regressor-question"))
