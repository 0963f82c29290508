"""The run folder's own rules: claiming it for one run at a time, what a resume may continue (its checkpoint checked
against the run's stages before anything changes), and keeping its metrics consistent with its checkpoint. (What
goes into the folder is listed in ``fitnets.training.run``.)"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from pathlib import Path

from fitnets.errors import FitNetsError
from fitnets.training.config import RunConfig, config_changes, from_dict, identity_changes, resume_changes
from fitnets.training.engine import ResumePoint, Stage, lr_factor
from fitnets.training.loading import config_of_run

log = logging.getLogger("fitnets.training.run")

CLAIM = ".claimed"


def claim_folder(run_dir: Path) -> None:
    """Make ``run_dir`` this process's alone, atomically: two runs started with the same name at the same time
    cannot both write into it. A claim left by a process of this machine that no longer exists (killed before
    its first checkpoint) is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = path.read_text().split() if path.is_file() else []
            if len(owner) == 2 and owner[0] == socket.gethostname() and not process_alive(int(owner[1])):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise FitNetsError(f"{run_dir} is in use by another run (started by {' pid '.join(owner) or 'unknown'});"
                               " choose another --name, or delete the folder if that run is gone") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}")
        return
    raise FitNetsError(f"cannot claim {run_dir}: another run keeps claiming it; choose another --name")


def release_folder(run_dir: Path) -> None:
    """Give up the claim on ``run_dir`` (a run that stopped before writing anything)."""
    path = run_dir / CLAIM
    if path.is_file() and path.read_text() == f"{socket.gethostname()} {os.getpid()}":
        path.unlink()


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with ``pid`` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_metrics(path: Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (none when it does not exist).

    Raises:
        FitNetsError: a line that is not a JSON object (damaged or edited), naming the file and the line.
    """
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise FitNetsError(f"{path}, line {number} is damaged (not a metrics row: {line[:60]!r}); repair or "
                               "delete that line to go on")
        rows.append(row)
    return rows


def kept_rows(rows: list[dict], point: ResumePoint, order: list[str]) -> list[dict]:
    """The metrics ``rows`` up to the checkpoint ``point`` (those after it came from an epoch the checkpoint does
    not hold: a crash between the two writes). ``order``: the run's stage names, in order."""
    last = (order.index(point.stage), point.epoch + 1)
    return [r for r in rows if (order.index(r["stage"]), r["epoch"]) <= last]


def trim_metrics(path: Path, point: ResumePoint, order: list[str]) -> None:
    """Drop the metric rows written after the checkpoint ``point``, so that no epoch appears twice once the
    resumed run writes it again."""
    if path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in kept_rows(read_metrics(path), point, order)))


def resume_point(run_dir: Path, tensors: bool = True) -> tuple[RunConfig, ResumePoint]:
    """What a resume of ``run_dir`` continues: the folder's ``config.yaml`` — the run's identity — and its last
    checkpoint, which must have been trained with that identity (seed, method, models, data...); with
    ``tensors=False`` the checkpoint's metadata alone (a checkpoint of any size read at no cost: the checks
    before the run is built, the plan).

    Raises:
        FitNetsError: nothing to resume, or a ``config.yaml`` edited by hand so that it no longer says what the
            checkpoint was trained with (one line, naming the edited keys).
    """
    run_dir = Path(run_dir)
    saved = config_of_run(run_dir)
    last = run_dir / "last.safetensors"
    if not last.is_file():
        raise FitNetsError(f"nothing to resume in {run_dir}: no epoch had finished (no last.safetensors); start the "
                           "run again")
    point = ResumePoint.read(last, tensors)
    if point.config:
        edited = identity_changes(config_changes(from_dict(point.config), saved))
        if edited:
            raise FitNetsError(f"{run_dir / 'config.yaml'} no longer says what its checkpoint was trained with: "
                               f"{edited} (edited by hand?); put it back, or start a new run to change it")
    return saved, point


def refuse_occupied(run_dir: Path) -> None:
    """A fresh run must not train into a folder that holds one (finished, or resumable)."""
    if (run_dir / "last.safetensors").exists() or (run_dir / "results.json").exists():
        raise FitNetsError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another "
                           "--name")


def check_resume(run_dir: Path, config: RunConfig) -> RunConfig:
    """The resume rule, before anything is built: ``config`` may change from the folder's saved config only what
    a resume may change (``config.RESUME_MAY_CHANGE``). Returns the saved config.

    Raises:
        FitNetsError: nothing to resume, or a change the rule refuses.
    """
    saved, _ = resume_point(run_dir, tensors=False)
    # Where the folder lies is not what it trained: a copied or renamed folder resumes in place, as `--resume
    # RUN_DIR` does. The input shape a run took from its data is recorded (a run made before that: not).
    saved.name, saved.out = config.name, config.out
    saved.input_shape = saved.input_shape or config.input_shape
    config.input_shape = config.input_shape or saved.input_shape
    changes = resume_changes(saved, config)
    if changes:
        log.info("resuming with %s", ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()))
    return saved


def open_folder(run_dir: Path, resume: bool, main: bool) -> ResumePoint | None:
    """Claim the folder for this run alone — a fresh start and a resume alike, so that two processes never train
    into one folder — and return the resume point (its tensors read) when ``resume``."""
    point = resume_point(run_dir)[1] if resume else None
    if main:  # only rank 0 lays out the folder
        if not resume:
            refuse_occupied(run_dir)
        claim_folder(run_dir)
        if point is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    return point


def check_point(run_dir: Path, method: str, stages: list[Stage], point: ResumePoint) -> None:
    """Refuse, before anything in the folder changes, a checkpoint that does not fit this run's stages and
    models, and what a resume cannot honour: a finished stage's length changed, a stage shorter than what it
    has trained, a finished run with nothing left to train."""
    stage = next((s for s in stages if s.name == point.stage), None)
    if stage is None:
        raise FitNetsError(f"the checkpoint in {run_dir} is from a stage {point.stage!r} that method {method} does "
                           "not have")
    try:
        stage.load(point.tensors)
    except RuntimeError as err:
        raise FitNetsError(f"the checkpoint in {run_dir} does not fit this run's models: "
                           f"{str(err).splitlines()[0]}") from None
    for earlier in stages[:stages.index(stage)]:
        done = point.finished.get(earlier.name, {}).get("epochs", earlier.epochs)
        if done != earlier.epochs:
            raise FitNetsError(f"stage {earlier.name} of {run_dir} finished after {done} epochs; a resume cannot "
                               f"make it {earlier.epochs}: start a new run (another --name) for that")
    trained = point.epoch + 1
    if stage.epochs < trained:
        raise FitNetsError(f"stage {stage.name} of {run_dir} has trained {trained} epochs; a resume cannot shorten "
                           f"it to {stage.epochs}: give at least {trained} (its selected weights are in "
                           f"{stage.name}_best.safetensors)")
    stopped = stage.patience is not None and point.stale >= stage.patience
    if stage is stages[-1] and (stage.epochs == trained or stopped):
        raise FitNetsError(f"{run_dir} has finished ({'stopped early after ' if stopped else ''}{trained} epochs of "
                           f"stage {stage.name}): nothing to resume; give more epochs to extend it")


def extension(run_dir: Path, stages: list[Stage], point: ResumePoint, examples: int, batch_size: int) -> str | None:
    """What continuing ``point``'s stage past the length it was trained for does to its schedules (a resume with
    more epochs; ``--dry-run`` prints it, the run logs it): the learning-rate schedule and λ's decay are laid over
    the new length, so both jump at the first new epoch."""
    steps_per_epoch = math.ceil(examples / batch_size)
    stage = next(s for s in stages if s.name == point.stage)
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("stage") == stage.name]
    planned = {r["epoch"] for r in rows}
    old = point.config.get("epochs") if stage.name == stages[-1].name else None
    if not rows or old is None or stage.epochs <= old or max(planned) != point.epoch + 1:
        return None
    step = (point.epoch + 1) * steps_per_epoch
    lr = stage.optim.lr * lr_factor(stage.optim, step, stage.epochs * steps_per_epoch, steps_per_epoch)
    text = (f"extending stage {stage.name} from {old} to {stage.epochs} epochs lays its {stage.optim.schedule} "
            f"learning-rate schedule over the new length: epoch {point.epoch + 2} starts at lr {lr:.3g} "
            f"(epoch {point.epoch + 1} ended at {rows[-1].get('lr', float('nan')):.3g})")
    weight = stage.step.epoch_metrics(point.epoch + 1).get("kd_weight")
    if weight is not None and "kd_weight" in rows[-1]:
        text += f", and λ goes from {rows[-1]['kd_weight']:.3g} to {weight:.3g}"
    return text
