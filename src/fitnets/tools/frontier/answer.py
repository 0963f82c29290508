"""The answer of a frontier: one row per candidate (its free facts, test accuracy mean ± std per method, teacher
agreement, training time), the Pareto-optimal rows marked per method, the pick under the budget, and a figure —
written as ``frontier.json`` (for programs), ``frontier.md`` and ``frontier.png`` (for people).

``frontier.json``: ``{"teacher": {...}, "candidates": [{"name", "spec", "args", "params", "macs",
"latency_ms", "speedup", "compression", "status", "guided", "results": {METHOD: {"test_acc": [per seed],
"seeds", "mean", "std", "teacher_agreement", "train_time_s"}}, "pareto": [METHOD, ...], "screen"}, ...],
"pick": {...}, "screen": {...}, "cost": {"teacher_images": {"training", "evaluation"}, "trials",
"train_examples", "wall_s", "by_trial": [{"candidate", "method", "seed", "teacher_images", "wall_s"}]}}``.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from fitnets.tools.frontier.pareto import pareto, pick

log = logging.getLogger(__name__)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A method's results over its seeds (``runs``: each seed's ``results.json``, with ``seed``)."""
    runs = sorted(runs, key=lambda r: r["seed"])
    accs = [r["test_acc"] for r in runs]
    agreement = [r["teacher_agreement"] for r in runs if r.get("teacher_agreement") is not None]
    return {"test_acc": accs, "seeds": [r["seed"] for r in runs], "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "teacher_agreement": statistics.fmean(agreement) if agreement else None,
            "train_time_s": statistics.fmean(r.get("train_time_s", 0.0) for r in runs)}


def mark(candidates: list[dict[str, Any]], methods: list[str], min_speedup: float | None,
         budget: str) -> dict[str, Any] | None:
    """Set each candidate's ``pareto`` (the methods on whose accuracy–speed-up frontier it lies) and return the
    pick: the most accurate (candidate, method) at ``speed-up ≥ min_speedup``."""
    for c in candidates:
        c["pareto"] = []
    for method in methods:
        points = {i: (c["results"][method]["mean"], c["speedup"]) for i, c in enumerate(candidates)
                  if method in c.get("results", {})}
        for i in pareto(points):
            candidates[i]["pareto"].append(method)
    rows = {(i, m): (c["results"][m]["mean"], c["speedup"]) for i, c in enumerate(candidates)
            for m in c.get("results", {})}
    best = pick(rows, min_speedup)
    if best is None:
        return None
    c, method = candidates[best[0]], best[1]
    return {"candidate": c["name"], "method": method, "test_acc": c["results"][method]["mean"],
            "speedup": c["speedup"], "params": c["params"], "budget": budget}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def markdown(answer: dict[str, Any], methods: list[str]) -> str:
    t = answer["teacher"]
    head = ["candidate", "params", "MACs", "latency ms", "speed-up", "compression"]
    head += [f"{m} acc %" for m in methods] + ["agreement %", "train time"]
    head += ["guided (from)"] * ("fitnet" in methods) + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append(f"| **teacher** {t['name']} | {t['params']:,} | {t['macs'] / 1e6:.2f}M | {t['latency_ms']:.2f} "
                 "| 1.00 | "
                 f"1.00 | " + " | ".join(_pct(t.get("test_acc")) if i == 0 else "" for i in range(len(methods)))
                 + " | | |" + " |" * ("fitnet" in methods) + " |")
    for c in answer["candidates"]:
        cells = []
        for m in methods:
            r = c.get("results", {}).get(m)
            star = " ★" if m in c.get("pareto", []) else ""
            cells.append("—" if r is None else
                         f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} ({len(r['test_acc'])}){star}")
        results = list(c.get("results", {}).values())
        agreement = [r["teacher_agreement"] for r in results if r.get("teacher_agreement") is not None]
        minutes = sum(r["train_time_s"] * len(r["test_acc"]) for r in results) / 60
        lines.append(f"| {c['name']} | {c['params']:,} | {c['macs'] / 1e6:.2f}M | {c['latency_ms']:.2f} | "
                     f"{c['speedup']:.2f} | {c['compression']:.2f} | " + " | ".join(cells) +
                     f" | {_pct(statistics.fmean(agreement)) if agreement else '—'} | "
                     f"{f'{minutes:.1f} min' if results else '—'} | "
                     + (f"{c['guided'] or '—'} ({c.get('guided_from')}) | " if "fitnet" in methods else "")
                     + f"{c['status']} |")
    notes = ["", ("★: on that method's Pareto frontier of test accuracy against speed-up; (n): seeds. Agreement: "
             "top-1 agreement with the teacher on the test set, averaged over methods with a teacher and seeds.")]
    p = answer.get("pick")
    if p:
        gap = ""
        if t.get("test_acc") is not None:
            points = 100 * (t["test_acc"] - p["test_acc"])
            side = "below" if points > 0 else "above"
            gap = f", {abs(points):.2f} points {side} the teacher's {100 * t['test_acc']:.2f}%"
        notes.append(f"**Pick** ({p['budget']}): {p['candidate']} by {p['method']}, {100 * p['test_acc']:.2f}% at "
                     f"{p['speedup']:.2f}× the teacher's speed{gap}.")
    screen = answer.get("screen")
    if screen and screen.get("tau") is not None:
        notes.append(f"Screen ({screen['steps']} KD steps per candidate, kept {screen['kept']}): Kendall's τ between "
                     f"the screen's validation accuracy and the final {screen['method']} test accuracy over "
                     f"{screen['pairs']} candidates: {screen['tau']:.2f}.")
    cost = answer.get("cost")
    if cost:
        images = cost["teacher_images"]
        notes.append(f"Teacher: {images.get('training', 0):,} images through it for training over {cost['trials']} "
                     f"trials ({cost['train_examples']:,} training examples), {images.get('evaluation', 0):,} for "
                     f"evaluation (validation, test agreement); {cost['wall_s'] / 60:.1f} min of training in all.")
    return "\n".join(lines + notes)


def plot(answer: dict[str, Any], methods: list[str], path: Path) -> bool:
    """Accuracy (mean ± std over seeds) against speed-up and against parameters, one line per method through its
    frontier in each panel, the teacher as a star. Returns False (and says so) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no frontier.png: matplotlib is not installed (pip install 'fitnets[report]')")
        return False
    t = answer["teacher"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "speedup", "speed-up over the teacher (×)"), (axes[1], "params", "parameters")):
        for method in methods:
            rows = [c for c in answer["candidates"] if method in c.get("results", {})]
            if not rows:
                continue
            xs = [c[key] for c in rows]
            ys = [100 * c["results"][method]["mean"] for c in rows]
            dots = ax.errorbar(xs, ys, yerr=[100 * c["results"][method]["std"] for c in rows], fmt="o", ms=4,
                               alpha=0.5, label=None)
            # the frontier of this panel: faster is better on the left, fewer parameters on the right
            sign = 1 if key == "speedup" else -1
            best = pareto({i: (y, sign * x) for i, (x, y) in enumerate(zip(xs, ys, strict=True))})
            front = sorted((xs[i], ys[i]) for i in best)
            if front:
                ax.plot(*zip(*front, strict=True), "-o", color=dots[0].get_color(), label=method, markersize=4)
        if t.get("test_acc") is not None:
            ax.plot([1.0 if key == "speedup" else t["params"]], [100 * t["test_acc"]], "k*", markersize=12,
                    label="teacher")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(answer: dict[str, Any], methods: list[str], folder: Path, figure: bool = True) -> str:
    """``frontier.json``, ``frontier.md`` and (with matplotlib) ``frontier.png`` in ``folder``; returns the
    table as Markdown."""
    (folder / "frontier.json").write_text(json.dumps(answer, indent=1))
    text = markdown(answer, methods)
    figured = figure and plot(answer, methods, folder / "frontier.png")
    (folder / "frontier.md").write_text(f"# fitnets frontier: {answer['name']}\n\n{text}\n"
                                        + ("\n![the frontier](frontier.png)\n" if figured else ""))
    return text
