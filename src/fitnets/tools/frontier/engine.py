"""A frontier from start to answer: resolve the family, screen it, train its trials, collect the answer."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from fitnets.errors import FitNetsError
from fitnets.tools.frontier import answer
from fitnets.tools.frontier.candidates import Candidate
from fitnets.tools.frontier.facts import Budget, Facts
from fitnets.tools.frontier.family import Family, Frontier, admit, open_study, resolve, wanted
from fitnets.tools.frontier.pareto import kendall_tau
from fitnets.tools.frontier.trial import TrialSpec, run_dir, run_trial
from fitnets.tools.frontier.workers import searched, train
from fitnets.training.config import RunConfig

log = logging.getLogger(__name__)


def screen(family: Family) -> None:
    """The cheap screen: a short KD run of ``screen_steps`` steps per candidate in the budget (in this process,
    its run folders under ``screen/``), ranked by validation accuracy; all but the best ``keep`` are set aside."""
    f = family.frontier
    if not f.screen_steps:
        return
    scores = {}
    steps = {"epochs": 1, "data.train_size": f.screen_steps * f.base.data.batch_size}
    for c in f.candidates:
        if family.status[c.slug] != "queued" and not family.status[c.slug].startswith("no FitNets"):
            continue
        results = run_trial(f.base, TrialSpec(c, "kd", 0, extra=steps), f.folder / "screen", f.teacher, f.data)
        scores[c.slug] = max(s.get("best_score", 0.0) for s in results["stages"].values())
    kept = sorted(scores, key=lambda k: -scores[k])[:f.keep or len(scores)]
    for slug, score in scores.items():
        if slug not in kept:
            family.status[slug] = f"screened out (val acc {100 * score:.2f}%)"
    family.screen = {"steps": f.screen_steps, "keep": f.keep, "scores": scores, "kept": len(kept)}


def collect(family: Family) -> dict[str, Any]:
    """The answer from the trials' run folders (whoever trained them)."""
    f = family.frontier
    rows, images, trials, wall, by_trial = [], {}, 0, 0.0, []
    if f.search:  # the candidates are those the sampler tried
        f.candidates = searched(open_study(f))
        for c in f.candidates:
            if c.slug not in family.facts:
                admit(family, c)
    for c in f.candidates:
        facts = family.facts[c.slug]
        row = {"name": c.label, "spec": c.spec, "args": dict(c.args), **facts.to_dict(),
               "guided": family.guided.get(c.slug), "guided_from": family.sources.get(c.slug),
               "status": family.status[c.slug], "results": {},
               "screen": family.screen.get("scores", {}).get(c.slug)}
        for method in f.methods:
            runs = []
            for seed in all_seeds(f):
                path = run_dir(f.folder, c, method, seed)
                if (path / "results.json").is_file():
                    result = json.loads((path / "results.json").read_text())
                    record = json.loads((path / "trial.json").read_text()) if (path / "trial.json").is_file() else {}
                    for kind, n in record.get("teacher_images", {}).items():
                        images[kind] = images.get(kind, 0) + n
                    wall += record.get("wall_s", 0.0)
                    trials += 1
                    by_trial.append({"candidate": c.label, "method": method, "seed": seed,
                                     "teacher_images": record.get("teacher_images", {}),
                                     "wall_s": record.get("wall_s")})
                    runs.append(result)
            if runs:
                row["results"][method] = answer.summarize(runs)
        if row["results"] and row["status"] == "queued":
            done = sum(len(r["test_acc"]) for r in row["results"].values())
            eligible = [m for m in f.methods if m != "fitnet" or family.guided.get(c.slug)]
            row["status"] = "trained" if done >= len(f.seeds) * len(eligible) else f"{done} trial(s) trained"
        rows.append(row)
    at = f.pick_speedup if f.pick_speedup is not None else f.budget.min_speedup
    pick = answer.mark(rows, f.methods, at, f"the most accurate student at ≥ {at:g}× the teacher's speed"
                       if at is not None else "the most accurate student")
    out = {"name": f.name, "teacher": family.teacher_facts, "candidates": rows, "pick": pick,
           "methods": f.methods, "seeds": f.seeds,
           "cost": {"teacher_images": images, "trials": trials, "train_examples": family.train_examples,
                    "wall_s": wall, "by_trial": by_trial}}
    if family.screen:
        method = "kd" if "kd" in f.methods else f.methods[0]  # the screen's own method where it is trained
        pairs = [(family.screen["scores"][r_slug], row["results"][method]["mean"])
                 for r_slug, row in zip((c.slug for c in f.candidates), rows, strict=True)
                 if r_slug in family.screen["scores"] and method in row["results"]]
        out["screen"] = {**{k: v for k, v in family.screen.items() if k != "scores"}, "method": method,
                         "pairs": len(pairs),
                         "tau": kendall_tau(*zip(*pairs, strict=True)) if len(pairs) > 1 else None}
    return out


def slugs_by_slug(f: Frontier) -> dict[str, Candidate]:
    return {c.slug: c for c in f.candidates}


RESOLVED = "family.json"  # what the family resolved to: what `fitnets report` needs to answer without training


def save(family: Family) -> None:
    f = family.frontier
    (f.folder / RESOLVED).write_text(json.dumps({
        "methods": f.methods, "seeds": f.seeds, "frontier_seeds": f.frontier_seeds, "pick_speedup": f.pick_speedup,
        "budget": dataclasses.asdict(f.budget), "candidates": [{"spec": c.spec, "args": c.args} for c in f.candidates],
        "teacher": family.teacher_facts, "facts": {k: v.to_dict() for k, v in family.facts.items()},
        "guided": family.guided, "sources": family.sources, "status": family.status,
        "input_shape": list(family.input_shape), "train_examples": family.train_examples, "screen": family.screen},
        indent=1))


def load(folder: Path) -> Family:
    """The family a frontier folder resolved to (its ``family.json``), to collect its answer again.

    Raises:
        FitNetsError: the folder holds no resolved frontier.
    """
    try:
        saved = json.loads((folder / RESOLVED).read_text())
    except (OSError, ValueError):
        raise FitNetsError(f"{folder} holds no frontier that has started (no readable {RESOLVED}): run "
                           "`fitnets frontier ... --out PARENT --name NAME` first") from None
    candidates = [Candidate(c["spec"], c["args"]) for c in saved["candidates"]]
    f = Frontier(RunConfig(), candidates, folder, saved["methods"], saved["seeds"], budget=Budget(**saved["budget"]),
                 frontier_seeds=saved["frontier_seeds"], pick_speedup=saved["pick_speedup"])
    return Family(f, saved["teacher"], {k: Facts(**v) for k, v in saved["facts"].items()}, saved["guided"],
                  saved["sources"], saved["status"], tuple(saved["input_shape"]), saved["train_examples"],
                  saved["screen"])


def report(folder: Path, figure: bool = True) -> str:
    """The answer of the frontier in ``folder`` from what its trials have finished so far (nothing trained);
    ``frontier.json``, ``.md`` and ``.png`` written again. Returns the table."""
    family = load(Path(folder))
    result = collect(family)
    return answer.write(result, family.frontier.methods, family.frontier.folder, figure)


def all_seeds(f: Frontier) -> list[int]:
    return sorted(set(f.seeds) | set(range(f.frontier_seeds)))


def run(f: Frontier) -> tuple[dict[str, Any], str]:
    """The whole frontier: resolve, screen, train, answer. Returns the answer and its Markdown table."""
    family = resolve(f)
    screen(family)
    save(family)
    train(family, wanted(family))
    result = collect(family)
    slugs = {c.label: c for c in f.candidates}
    # More seeds where the answer is decided: the points on each method's frontier — again until the frontier
    # that more seeds draw is one whose every point has them (a mean that moves can move a point on or off).
    while f.frontier_seeds:
        front = {(slugs[row["name"]].slug, m) for row in result["candidates"] for m in row["pareto"]}
        todo = [t for t in wanted(family, list(range(f.frontier_seeds)), front)
                if not (run_dir(f.folder, slugs_by_slug(f)[t["candidate"]], t["method"], t["seed"])
                        / "results.json").is_file()]
        if not todo:
            break
        train(family, todo)
        result = collect(family)
    save(family)  # with the sampler's candidates, when it searched
    return result, answer.write(result, f.methods, f.folder, f.figure)
