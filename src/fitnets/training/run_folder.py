"""The run folder's own bookkeeping: claiming it for one run at a time, and keeping its metrics consistent with
its checkpoint on resume. (What goes into the folder is listed in ``fitnets.training.run``.)"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from fitnets.errors import FitNetsError
from fitnets.training.config import RunConfig, config_changes, from_dict, identity_changes
from fitnets.training.engine import ResumePoint
from fitnets.training.loading import config_of_run

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
            if len(owner) == 2 and owner[0] == socket.gethostname() and not _alive(int(owner[1])):
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


def _alive(pid: int) -> bool:
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
