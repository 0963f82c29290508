"""A frontier from start to answer: resolve the family (identity, data, teacher, candidates and their free
facts, budgets, guided layers), then screen, then queue and train the trials, then answer.

Everything before the queue runs in the process that was started; the trials run in it (``jobs=1``), in
``jobs`` worker processes, or in any process on any machine that opens the same study (``storage``).
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from fitnets.errors import FitNetsError
from fitnets.tools.frontier import answer, queue
from fitnets.tools.frontier.candidates import Candidate, build
from fitnets.tools.frontier.facts import Budget, Facts, check_budget, measure
from fitnets.tools.frontier.pairing import choose_guided
from fitnets.tools.frontier.pareto import kendall_tau
from fitnets.tools.frontier.trial import TrialData, TrialSpec, run_dir, run_trial
from fitnets.training.config import RunConfig

log = logging.getLogger(__name__)

IDENTITY = "frontier.yaml"


@dataclass
class Frontier:
    """A family of students and how to train it (``fitnets frontier``'s flags, ``fitnets.frontier``'s
    arguments).

    Attributes:
        base: the run config every trial starts from (every ``distill`` flag; its ``teacher`` names the teacher).
        teacher: the trained teacher as an object (Python), else ``None`` (loaded by ``base.teacher``).
        candidates: the students; ``space``: with ``search`` > 0, the keyword values the sampler picks from for
            the first candidate's factory (``--trials``).
        methods, seeds: each kept candidate is trained by each method with each seed.
        folder: the frontier folder (``out/name``): trial run folders, the study, the answer.
        budget: candidates outside it are listed, not trained; its ``min_speedup`` names the pick.
        screen_steps, keep: the screen's KD steps per candidate and how many candidates go on (0: no screen).
        jobs, storage, heartbeat: worker processes here, the study's storage URL, Optuna's heartbeat (s).
        bench_batch, bench_repeats: the batch and timed repeats of the latency measurement.
    """

    base: RunConfig
    candidates: list[Candidate]
    folder: Path
    methods: list[str] = field(default_factory=lambda: ["fitnet"])
    seeds: list[int] = field(default_factory=lambda: [0])
    teacher: nn.Module | None = None
    data: TrialData = field(default_factory=TrialData)
    budget: Budget = field(default_factory=Budget)
    screen_steps: int = 0
    keep: int | None = None
    search: int = 0
    space: dict[str, list[Any]] = field(default_factory=dict)
    jobs: int = 1
    storage: str | None = None
    heartbeat: int = 60
    bench_batch: int = 128
    bench_repeats: int = 10
    progress: bool = False
    figure: bool = True

    @property
    def name(self) -> str:
        return self.folder.name

    def identity(self) -> dict[str, Any]:
        d = self.base.data
        return {"teacher": self.base.teacher, "teacher_args": dict(self.base.teacher_args),
                "data": {"name": d.name, "train_size": d.train_size, "val_size": d.val_size,
                         "test_size": d.test_size, "augment": d.augment, "pad": d.pad, "flip": d.flip},
                "methods": list(self.methods)}


def check_identity(f: Frontier) -> None:
    """Refuse a frontier folder made for another teacher, data or method list (as a resume with another
    identity is refused); record the identity on first use."""
    path = f.folder / IDENTITY
    mine = f.identity()
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        changed = [k for k in mine if saved.get(k) != mine[k]]
        if changed:
            k = changed[0]
            raise FitNetsError(f"{f.folder} is a frontier of {k} {saved.get(k)!r}, not {mine[k]!r}: a frontier "
                               "folder keeps its teacher, data and methods; give another --name for this one")
        return
    f.folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(mine, sort_keys=False))


@dataclass
class Family:
    """What the family resolved to, before training: shared by the workers (picklable)."""

    frontier: Frontier
    teacher_facts: dict[str, Any]
    facts: dict[str, Facts]          # by candidate slug
    guided: dict[str, str | None]    # by slug, for FitNets
    sources: dict[str, str]          # by slug: where the guided layer came from (--guided, registry, suggest)
    status: dict[str, str]           # by slug: "trained", or why not
    input_shape: tuple[int, ...]
    train_examples: int
    screen: dict[str, Any] = field(default_factory=dict)


def _load(f: Frontier):
    """The data (as the trials read it) and the teacher, once, in this process."""
    from fitnets.training import distributed
    from fitnets.training.loading import ModelRef, load_data, load_model, user_data

    device = distributed.resolve_device(f.base.device)
    config = copy.deepcopy(f.base)
    if f.data.train is not None:
        data = user_data(config, device, f.data.train, f.data.test, f.data.val, f.data.num_classes)
    else:
        data = load_data(config, device)
    teacher = f.teacher if f.teacher is not None else load_model(ModelRef.parse(f.base.teacher), trained=True,
                                                                  **f.base.teacher_args)
    return data, teacher, device


def resolve(f: Frontier) -> Family:
    """Identity, data, teacher, every candidate's free facts, the budget and the guided layers — before any
    training. Raises ``FitNetsError`` for each bad input, in one line."""
    from fitnets.core.inputs import InputFormat
    from fitnets.data.loader import example
    from fitnets.models.registry import model_spec
    from fitnets.training.evaluate import evaluate_accuracy

    queue.optuna()
    check_identity(f)
    data, teacher, device = _load(f)
    f.data.num_classes = data.train.num_classes
    x = example(data.train, 2, None).float().cpu()
    shape = tuple(x.shape[1:])
    teacher = teacher.to(device).eval()
    t = measure(teacher, shape, f.bench_batch, f.bench_repeats, device)
    acc = evaluate_accuracy(teacher, data.test, f.base.data.eval_batch_size, InputFormat(), f.base.logits_key)["acc"]
    teacher_facts = {"name": f.base.teacher, **t.to_dict(), "test_acc": acc}
    teacher = teacher.to("cpu")
    facts, guided, sources, status = {}, {}, {}, {}
    hint = f.base.hint
    if "fitnet" in f.methods and not hint:
        try:
            hint = model_spec(f.base.teacher).hint
        except FitNetsError:
            hint = None
        if not hint:
            raise FitNetsError(f"method fitnet needs the teacher's hint layer: give --hint (see `fitnets layers "
                               f"{f.base.teacher}`)")
    f.base.hint = hint
    for c in f.candidates:
        model = build(c, f.data.num_classes)
        facts[c.slug] = measure(model, shape, f.bench_batch, f.bench_repeats, device).relative_to(t)
        status[c.slug] = "queued"
        if "fitnet" in f.methods:
            pairing = choose_guided(teacher, hint, model.to("cpu"), c.name, x, f.base.guided)
            guided[c.slug], sources[c.slug] = pairing.guided, pairing.source
            if pairing.guided is None:
                status[c.slug] = f"no FitNets: {pairing.source}"
        miss = f.budget.misses(facts[c.slug])
        if miss:
            status[c.slug] = f"outside the budget: {miss}"
    check_budget(f.budget, facts, {c.slug: c.label for c in f.candidates})
    return Family(f, teacher_facts, facts, guided, sources, status, shape, len(data.train))


def wanted(family: Family) -> list[dict[str, Any]]:
    """Every trial to train, seed-major (a first pass of one seed over every candidate comes first)."""
    f, out = family.frontier, []
    for seed in f.seeds:
        for c in f.candidates:
            if not family.status[c.slug].startswith(("queued", "no FitNets")):
                continue
            for method in f.methods:
                if method == "fitnet" and family.guided.get(c.slug) is None:
                    continue
                out.append({"candidate": c.slug, "method": method, "seed": seed})
    return out


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


class Objective:
    """A worker's trial: pops a queued (candidate, method, seed), drops it if another worker holds it, trains it
    into its run folder; returns (test accuracy, latency)."""

    def __init__(self, family: Family, study):
        self.family, self.study = family, study
        self.by_slug = {c.slug: c for c in family.frontier.candidates}

    def __call__(self, trial) -> tuple[float, float]:
        op = queue.optuna()
        f = self.family.frontier
        attrs = trial.user_attrs
        if queue.trial_key(attrs) is None:
            raise op.TrialPruned("no queued trial left")
        other = queue.duplicate_of(self.study, trial)
        if other is not None:
            trial.set_user_attr("duplicate_of", other)
            raise op.TrialPruned(f"trial {other} holds the same (candidate, method, seed)")
        queue.mark_worker(trial)
        c = self.by_slug[attrs["candidate"]]
        spec = TrialSpec(c, attrs["method"], int(attrs["seed"]), guided=self.family.guided.get(c.slug))
        results = run_trial(f.base, spec, f.folder, f.teacher, f.data, progress=f.progress)
        trial.set_user_attr("teacher_images", results.get("teacher_images", {}))
        return results["test_acc"], self.family.facts[c.slug].latency_ms


def _worker(family: Family) -> None:
    """A worker process of ``--jobs``: its share of the machine's threads, then trials until none is left."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // family.frontier.jobs))
    f = family.frontier
    study = queue.open_study(f.folder, f.name, f.storage, f.heartbeat)
    queue.work(study, Objective(family, study))


def train(family: Family) -> None:
    """Queue every wanted trial (idempotent) and train them: here, or in ``jobs`` worker processes."""
    f = family.frontier
    study = queue.open_study(f.folder, f.name, f.storage, f.heartbeat)
    with queue.folder_lock(f.folder):
        taken = queue.retry_dead(study)
        added = queue.enqueue(study, wanted(family))
    if taken:
        log.info("%d trial(s) of a worker that is gone queued again: they resume from their checkpoints", taken)
    log.info("%d trial(s) queued, %d waiting in the study", added, queue.waiting(study))
    if f.jobs <= 1:
        queue.work(study, Objective(family, study))
        return
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(family,)) for _ in range(f.jobs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        raise FitNetsError(f"{len(failed)} of {f.jobs} worker processes stopped with an error (exit codes "
                           f"{failed}); run the same command again to continue")


def collect(family: Family) -> dict[str, Any]:
    """The answer from the trials' run folders (whoever trained them)."""
    f = family.frontier
    rows, images, trials, wall = [], {}, 0, 0.0
    for c in f.candidates:
        facts = family.facts[c.slug]
        row = {"name": c.label, "spec": c.spec, "args": dict(c.args), **facts.to_dict(),
               "guided": family.guided.get(c.slug), "guided_from": family.sources.get(c.slug),
               "status": family.status[c.slug], "results": {},
               "screen": family.screen.get("scores", {}).get(c.slug)}
        for method in f.methods:
            runs = []
            for seed in f.seeds:
                path = run_dir(f.folder, c, method, seed)
                if (path / "results.json").is_file():
                    result = json.loads((path / "results.json").read_text())
                    record = json.loads((path / "trial.json").read_text()) if (path / "trial.json").is_file() else {}
                    for kind, n in record.get("teacher_images", {}).items():
                        images[kind] = images.get(kind, 0) + n
                    wall += record.get("wall_s", 0.0)
                    trials += 1
                    runs.append(result)
            if runs:
                row["results"][method] = answer.summarize(runs)
        if row["results"] and row["status"] == "queued":
            done = sum(len(r["test_acc"]) for r in row["results"].values())
            row["status"] = "trained" if done == len(f.seeds) * len(f.methods) else f"{done} trial(s) trained"
        rows.append(row)
    pick = answer.mark(rows, f.methods, f.budget.min_speedup, f"the most accurate student at {f.budget.describe()}")
    out = {"name": f.name, "teacher": family.teacher_facts, "candidates": rows, "pick": pick,
           "methods": f.methods, "seeds": f.seeds,
           "cost": {"teacher_images": images, "trials": trials, "train_examples": family.train_examples,
                    "wall_s": wall}}
    if family.screen:
        method = f.methods[0]
        pairs = [(family.screen["scores"][r_slug], row["results"][method]["mean"])
                 for r_slug, row in zip((c.slug for c in f.candidates), rows)
                 if r_slug in family.screen["scores"] and method in row["results"]]
        out["screen"] = {**{k: v for k, v in family.screen.items() if k != "scores"}, "method": method,
                         "pairs": len(pairs), "tau": kendall_tau(*zip(*pairs)) if len(pairs) > 1 else None}
    return out


def run(f: Frontier) -> tuple[dict[str, Any], str]:
    """The whole frontier: resolve, screen, train, answer. Returns the answer and its Markdown table."""
    family = resolve(f)
    screen(family)
    train(family)
    result = collect(family)
    return result, answer.write(result, f.methods, f.folder, f.figure)
