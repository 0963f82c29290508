"""The trial queue of a frontier: an Optuna study (an optional extra, ``pip install 'fitnets[frontier]'``).

Each trial — a (candidate, method, seed) — is enqueued once as a WAITING trial whose user attributes name it;
workers (``--jobs`` here, or processes on other machines given the same ``--storage``) pop WAITING trials, and
Optuna's storages hand a WAITING trial to one worker only (``set_trial_state_values`` to RUNNING succeeds for
one caller: a row update in an RDB, an ordered log in a journal file). Enqueueing is idempotent: a trial already
complete, waiting or running is not enqueued again, and a worker that pops a duplicate (two processes enqueued
the same trial at the same moment) finds the other copy and drops its own — the lower trial number trains.

A worker killed mid-trial: with an RDB storage (the default SQLite file in the frontier folder, PostgreSQL, ...)
Optuna's heartbeat marks its trial failed once it has been silent for two heartbeats, and
``RetryHeartbeatStaleTrialCallback`` enqueues it again; a trial whose worker was a process of this machine that
no longer exists is failed and enqueued again at once. The retry trains into the same run folder, so it resumes
from the last checkpoint. Journal files have no heartbeat in Optuna: there a killed worker's trial is taken
over by a rerun on the machine it ran on.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fitnets.errors import FitNetsError
from fitnets.training.run_folder import process_alive

log = logging.getLogger(__name__)

INSTALL = "pip install 'fitnets[frontier]'"
DIRECTIONS: list = ["maximize", "minimize"]  # test accuracy up, latency down


def optuna():
    """The ``optuna`` module, or one line saying how to install it."""
    try:
        import optuna as module
    except ImportError:
        raise FitNetsError("fitnets frontier runs its trials through Optuna, which is not installed: "
                           f"{INSTALL}") from None
    module.logging.set_verbosity(module.logging.WARNING)
    # The heartbeat and its retry callback are marked experimental since Optuna 2.8–2.9; used as documented.
    warnings.filterwarnings("ignore", category=module.exceptions.ExperimentalWarning)
    return module


def trial_key(attrs: dict[str, Any]) -> tuple[str, str, int] | None:
    if "candidate" not in attrs:
        return None
    return attrs["candidate"], attrs["method"], int(attrs["seed"])


def _storage(folder: Path, url: str | None, heartbeat: int):
    op = optuna()
    if url is None:
        url = f"sqlite:///{(folder / 'study.db').resolve()}"
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        if not path.parent.is_dir():
            raise FitNetsError(f"cannot reach --storage {url}: the folder {path.parent} does not exist")
        return op.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return op.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                      heartbeat_stale_trial_callback=op.storages.RetryHeartbeatStaleTrialCallback(3))
    except Exception as err:  # sqlalchemy's many errors (no driver, no server, bad URL): one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FitNetsError(f"cannot reach --storage {url}: {first}") from None


def open_study(folder: Path, name: str, url: str | None = None, heartbeat: int = 60, seed: int = 0,
               population: int = 50):
    """The frontier's study (created on first use), its trials to maximise accuracy and minimise latency; the
    sampler for ``--trials`` is NSGA-II (``population`` trials a generation), seeded."""
    op = optuna()
    try:
        # One process at a time creates the storage's tables and the study (two workers started together race).
        with folder_lock(folder):
            return op.create_study(storage=_storage(folder, url, heartbeat), study_name=name, directions=DIRECTIONS,
                                   load_if_exists=True,
                                   sampler=op.samplers.NSGAIISampler(population_size=population, seed=seed))
    except FitNetsError:
        raise
    except Exception as err:  # the storage's own errors, as above
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FitNetsError(f"cannot open the study {name!r} in --storage {url or folder}: {first}") from None


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Processes sharing the frontier folder enqueue one at a time (the run-time check catches the rest)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".queue.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_dead(study) -> int:
    """Fail and enqueue again the RUNNING trials whose worker was a process of this machine that is gone, and
    (with a heartbeat) those silent too long anywhere. Returns how many were taken back."""
    op = optuna()
    op.storages.fail_stale_trials(study)
    retry = op.storages.RetryHeartbeatStaleTrialCallback(3)
    host, taken = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(op.trial.TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", "")).split()
        gone = len(owner) == 2 and owner[0] == host and not process_alive(int(owner[1]))
        if gone and study._storage.set_trial_state_values(trial._trial_id, state=op.trial.TrialState.FAIL):
            retry(study, study._storage.get_trial(trial._trial_id))
            taken += 1
    return taken


def enqueue(study, wanted: list[dict[str, Any]]) -> int:
    """Enqueue each trial of ``wanted`` (user attributes with ``candidate``, ``method``, ``seed``) that is not
    already complete, waiting or running. Returns how many were enqueued."""
    op = optuna()
    State = op.trial.TrialState
    held = {trial_key(t.user_attrs) for t in study.get_trials(deepcopy=False)
            if t.state in (State.COMPLETE, State.WAITING, State.RUNNING)}
    added = 0
    for attrs in wanted:
        if trial_key(attrs) not in held:
            study.enqueue_trial({}, user_attrs=attrs)
            held.add(trial_key(attrs))
            added += 1
    return added


def duplicate_of(study, trial) -> int | None:
    """The number of another trial that holds the same (candidate, method, seed) and wins over ``trial``: one
    complete, or one running with a lower number."""
    State = optuna().trial.TrialState
    key = trial_key(trial.user_attrs)
    for other in study.get_trials(deepcopy=False, states=(State.COMPLETE, State.RUNNING)):
        if other.number != trial.number and trial_key(other.user_attrs) == key and (
                other.state == State.COMPLETE or other.number < trial.number):
            return other.number
    return None


def waiting(study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna().trial.TrialState.WAITING,)))


def work(study, objective: Callable, more: Callable[[], bool] = lambda: False) -> None:
    """Run trials until none is waiting (and ``more()`` says no sampled trial is wanted): each call pops a
    waiting trial, or asks the sampler for a new one. A trial whose training fails (a ``FitNetsError``) is
    marked failed, said in the log, and the worker goes on."""
    while waiting(study) or more():
        try:
            study.optimize(objective, n_trials=1, catch=(FitNetsError,), gc_after_trial=False)
        except Exception as err:  # SQLite refuses a write while another worker's is pending: wait, try again
            if "database is locked" not in str(err):
                raise
            log.info("the study's database is busy: trying again")
            time.sleep(random.uniform(0.2, 1.0))


def mark_worker(trial) -> None:
    trial.set_user_attr("worker", f"{socket.gethostname()} {os.getpid()}")
