"""The trials of a frontier, trained by workers: this process (``jobs=1``), ``jobs`` worker processes, or any
process on any machine that opens the same study (``storage``). Each pops a queued (candidate, method, seed)
— or, with ``search``, asks the sampler for a candidate of the factory's keyword space — and trains it into its
run folder."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from typing import Any

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.frontier import queue
from fitnets.tools.frontier.candidates import Candidate
from fitnets.tools.frontier.family import Family, admit, open_study
from fitnets.tools.frontier.trial import TrialSpec, run_trial

log = logging.getLogger(__name__)


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
            if not f.search:
                raise op.TrialPruned("no queued trial left")
            return self.search(trial)
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


    def search(self, trial) -> tuple[float, float]:
        """A sampled trial (``--trials``): the sampler's keyword values for the factory, the candidate's free facts
        and budget, then its first method and seed trained."""
        op = queue.optuna()
        f = self.family.frontier
        args = {key: trial.suggest_categorical(key, values) for key, values in f.space.items()}
        c = Candidate(f.candidates[0].spec, args)
        trial.set_user_attr(SEARCHED, {"spec": c.spec, "args": args})
        queue.mark_worker(trial)
        try:
            admit(self.family, c)
        except FitNetsError as err:  # a point of the space the factory cannot build: the sampler learns it
            trial.set_user_attr("error", str(err))
            raise op.TrialPruned(str(err)) from None
        status = self.family.status[c.slug]
        if status != "queued":
            raise op.TrialPruned(status)  # outside the budget, or no guided layer: listed, not trained
        spec = TrialSpec(c, f.methods[0], f.seeds[0], guided=self.family.guided.get(c.slug))
        results = run_trial(f.base, spec, f.folder, f.teacher, f.data, progress=f.progress)
        trial.set_user_attr("teacher_images", results.get("teacher_images", {}))
        return results["test_acc"], self.family.facts[c.slug].latency_ms


SEARCHED = "searched"  # the user attribute of a sampled trial: its candidate's spec and keyword values


def searched(study) -> list[Candidate]:
    """The candidates the sampler tried and trained, in trial order, without repeats."""
    out = []
    for trial in study.get_trials(deepcopy=False, states=(queue.optuna().trial.TrialState.COMPLETE,)):
        found = trial.user_attrs.get(SEARCHED)
        if found:
            c = Candidate(found["spec"], dict(found["args"]))
            if c not in out:
                out.append(c)
    return out


def sampled(study) -> int:
    """Sampled trials so far that count against ``--trials`` (all but the failed ones, which are retried)."""
    failed = queue.optuna().trial.TrialState.FAIL
    return sum(1 for t in study.get_trials(deepcopy=False) if SEARCHED in t.user_attrs and t.state != failed)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _worker(family: Family) -> None:
    """A worker process of ``--jobs``: its share of the machine's threads, then trials until none is left."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, _stop)  # a polite stop ends the trial as Ctrl-C does: marked failed, resumable
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // family.frontier.jobs))
    f = family.frontier
    study = open_study(f)
    queue.work(study, Objective(family, study), lambda: sampled(study) < f.search)


def train(family: Family, trials: list[dict[str, Any]]) -> None:
    """Queue ``trials`` (idempotent) and train them: here, or in ``jobs`` worker processes."""
    f = family.frontier
    study = open_study(f)
    with queue.folder_lock(f.folder):
        taken = queue.retry_dead(study)
        added = queue.enqueue(study, trials)
    if taken:
        log.info("%d trial(s) of a worker that is gone queued again: they resume from their checkpoints", taken)
    log.info("%d trial(s) queued, %d waiting in the study", added, queue.waiting(study))
    if f.jobs <= 1:
        queue.work(study, Objective(family, study), lambda: sampled(study) < f.search)
        return
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(family,)) for _ in range(f.jobs)]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join()
    except BaseException:  # stopped (Ctrl-C, SIGTERM): the workers stop too, their trials left to resume
        for w in workers:
            w.terminate()
        for w in workers:
            w.join()
        raise
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        raise FitNetsError(f"{len(failed)} of {f.jobs} worker processes stopped with an error (exit codes "
                           f"{failed}); run the same command again to continue")
