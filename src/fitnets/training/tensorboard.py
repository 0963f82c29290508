"""``--tensorboard``: every metric of ``metrics.jsonl`` as TensorBoard scalars, per epoch and per logging step,
in ``RUN_DIR/tensorboard`` (an optional extra: ``pip install 'fitnets[tensorboard]'``).

Tags are ``<stage>/<metric>`` (``hint/val_hint_r2``, ``main/val_acc``) for epoch rows, against the run's epoch
count across stages, and ``<stage>/step_loss`` against the stage's step for the running loss the progress bar
shows. A resumed run writes the folder anew from metrics.jsonl (trimmed to its last checkpoint), so nothing the
interrupted session wrote after it remains; the per-step points of earlier sessions are not kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from fitnets.errors import FitNetsError


def _installed(package: str) -> bool:
    """Whether ``package`` is installed, read from its metadata without importing it."""
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


class TensorBoardLog:
    """Writes scalars to a TensorBoard event file in ``log_dir`` (emptied first); ``replay``: the metrics rows
    of earlier sessions of a resumed run, written again."""

    def __init__(self, log_dir: Path, replay: Sequence[dict[str, Any]] = ()):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as err:  # a broken install raises anything: protobuf's TypeError, an AttributeError…
            if isinstance(err, ImportError) and not _installed("tensorboard"):
                raise FitNetsError("--tensorboard needs the tensorboard package: pip install "
                                   "'fitnets[tensorboard]'") from None
            first = str(err).strip().splitlines()[:1]
            cause = type(err).__name__ + (f": {first[0]}" if first else "")
            raise FitNetsError(f"--tensorboard: the tensorboard package is installed but fails on import ({cause}): "
                               "reinstall it (pip install --force-reinstall 'fitnets[tensorboard]'), or run "
                               "without --tensorboard") from None
        shutil.rmtree(log_dir, ignore_errors=True)
        self.writer = SummaryWriter(str(log_dir))
        for index, row in enumerate(replay):
            self.epoch(row, index)

    def epoch(self, row: dict[str, Any], index: int) -> None:
        """One metrics.jsonl row: each numeric value under ``<stage>/<key>`` at the run's epoch ``index``."""
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(f"{row['stage']}/{key}", value, index)
        self.writer.flush()

    def step(self, stage: str, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{stage}/step_{key}", value, step)

    def close(self) -> None:
        self.writer.close()
