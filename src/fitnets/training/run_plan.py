"""What a run will do, as text (``--dry-run`` prints it, a run logs it): the models, the data, each stage with its
optimizer, the teacher-output store, where a resume continues, the speed options and what ``--fast`` does."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from fitnets.core.fitnet import FitNet
from fitnets.core.teacher import FrozenTeacher
from fitnets.training.config import RunConfig
from fitnets.training.engine import ResumePoint, Stage
from fitnets.training.loading import Data
from fitnets.training.run_folder import extension
from fitnets.training.speed import Speed, describe
from fitnets.training.store import StoredOutputs, human_size, stores_dir


def _count(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"


def plan_text(config: RunConfig, data: Data, stages: list[Stage], run_dir: Path, student: nn.Module,
              teacher: FrozenTeacher | None, fitnet: FitNet | None, point: ResumePoint | None = None,
              fast: str | None = None) -> str:
    """The plan, a line per fact; ``point``: the checkpoint a resume continues from; ``fast``: what ``--fast``
    does, when it has something to say."""
    c = config
    lines = [f"method   {c.method}", f"student  {c.student} ({_count(student)} parameters)"]
    if teacher is not None:
        lines.append(f"teacher  {c.teacher} ({_count(teacher.module)} parameters, frozen, eval mode)")
    lines.append(f"data     {c.data.name} ({len(data.train):,} training examples, validation {len(data.val):,}, "
                 f"batch {c.data.batch_size})")
    if fitnet is not None:
        lines.append(fitnet.describe())
    for i, stage in enumerate(stages, 1):
        o = stage.optim
        schedule = o.schedule + (f" (× {o.gamma:g} at epochs {', '.join(map(str, o.milestones or []))})"
                                 if o.schedule == "step" else "")
        lines.append(f"{f'stage {i}' if len(stages) > 1 else 'train':<8} {stage.about}; {o.name}, lr {o.lr:g}, "
                     f"{schedule} schedule" + (f", max-norm {o.max_norm:g}" if o.max_norm else ""))
    store = next((t for s in stages for t in s.teachers if isinstance(t, StoredOutputs)), None)
    if store is not None:
        per = "(seed, epoch, example)" if store.drawn else f"augmented view ({store.views} per example)"
        lines.append(f"store    teacher logits per {per}, {human_size(store.size_bytes())} in all, from the "
                     f"store in {stores_dir(store.root)}, filled by the teacher's live forwards where empty")
    if point is not None:
        lines.append(f"resume   after epoch {point.epoch + 1} of stage {point.stage}")
        note = extension(run_dir, stages, point, len(data.train), c.data.batch_size)
        if note:
            lines.append(f"         {note}")
    lines.append(f"speed    {describe(Speed.of(c), teacher is not None)}")
    if fast:
        lines.append(f"fast     {fast}")
    lines.append(f"run dir  {run_dir}")
    return "\n".join(lines)
