"""``fitnets suggest TEACHER STUDENT``: candidate (hint, guided) pairs, best first, each with its reason.

The paper picks both layers at the middle of their networks (§2.2: the hint is the teacher's middle layer, the
guided layer the student's; deeper guided layers over-regularise, §4.1). "Middle" here is measured by compute:
a layer's depth is the share of the network's multiply-accumulates done half-way through it (the mean of the
share done when its input arrives and when its output is ready), so a pair sits where each network is
half-way through its work, whatever the layer counts, and a layer that holds most of the work sits at its
centre rather than at its end. Candidates are the layers and blocks whose output is a map or a token sequence
(``_is_candidate``): the network's top-level layers, the layers of its top-level ``Sequential`` / ``ModuleList``
stages, and the blocks of a ``Sequential`` / ``ModuleList`` at any depth (ResNet blocks, ViT blocks,
``vit.encoder.layer.3``, timm's ``stages.2.blocks.3``). Pairs are ranked by how far both are from the middle and
from each other, then how they join (the paper's convolution, or resampled first) and the regressor's size.
``--probe N`` trains N hint-stage steps for each of the top candidates on real batches and adds the fit each
reached on held-out images (R², §5 of the paper relies on stage 1 fitting the hint), so the choice rests on
evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fitnets.core.features import patch_grid, token_layout
from fitnets.core.modes import eval_mode
from fitnets.core.profile import layer_macs
from fitnets.core.regressor import build_regressor, describe_regressor, needs_resampling
from fitnets.core.teacher import FrozenTeacher
from fitnets.errors import FitNetsError

TRUNK_SHARE = 0.9  # a module holding other candidates and more of the network's work than this wraps the trunk


@dataclass
class Layer:
    path: str
    shape: tuple[int, ...]   # as the regressor sees it: (C, H, W) (tokens on their grid) or (C,)
    depth: float             # share of the network's multiply-accumulates done half-way through the layer
    tokens: bool = False
    span: tuple[float, float] = (0.0, 1.0)   # shares done when its input arrives and when its output is ready


@dataclass
class Candidate:
    hint: Layer
    guided: Layer
    score: float
    joins: str
    regressor_params: int
    fit: float | None = None

    def reason(self) -> str:
        def at(layer: Layer, whose: str) -> str:   # the midpoint of the share of the work the layer does
            return (f"{100 * layer.depth:.0f}% of {whose} compute (the midpoint of the "
                    f"{100 * layer.span[0]:.0f}–{100 * layer.span[1]:.0f}% it spans)")
        teacher, student = at(self.hint, "the teacher's"), at(self.guided, "the student's")
        return f"hint at {teacher}, guided at {student}; {self.joins}"


def _is_candidate(path: str, modules: dict[str, nn.Module]) -> bool:
    """A top-level layer; a layer of a top-level Sequential / ModuleList (a network written as
    ``nn.Sequential(conv, relu, ...)`` lists its layers there); or, deeper, a block of a Sequential / ModuleList
    — a module with layers of its own. Single layers in a deeper Sequential are left out: there they are the
    inside of a block (a shortcut's ``Sequential(conv, bn)``, an MLP's ``Sequential(linear, gelu, linear)``),
    not a point on the network's trunk."""
    if not path:
        return False
    parent = path.rpartition(".")[0]
    if not parent:
        return True
    if not isinstance(modules[parent], (nn.Sequential, nn.ModuleList)):
        return False
    return "." not in parent or next(modules[path].children(), None) is not None


@torch.no_grad()
def layers(model: nn.Module, x: torch.Tensor) -> list[Layer]:
    """The candidate layers of ``model`` for input ``x`` whose output is a map or a token sequence, with
    their depth by compute."""
    total, entered, seen, maps = [0], {}, [], []
    hooks = []
    modules = dict(model.named_modules())

    def hook(module, inputs, output, path):
        total[0] += layer_macs(module, inputs, output)
        out = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            maps.append((path, tuple(out.shape[1:])))   # any map: the patch grid tokens may come from
        if isinstance(out, torch.Tensor) and _is_candidate(path, modules) and out.dim() in (3, 4):
            # MACs done on entry and on exit; the maps computed before it
            seen.append((path, out, entered.get(path, total[0]), total[0], len(maps)))

    for path, module in modules.items():
        hooks.append(module.register_forward_pre_hook(lambda m, i, p=path: entered.__setitem__(p, total[0])))
        hooks.append(module.register_forward_hook(lambda m, i, o, p=path: hook(m, i, o, p)))
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    outputs = {}
    image_hw = (x.shape[-2], x.shape[-1])
    found = [path for path, *_ in seen]
    inside = _branch_insides({path: out for path, out, *_ in seen})
    for path, out, start, end, before in seen:
        start, end = start / max(total[0], 1), end / max(total[0], 1)
        if end - start > TRUNK_SHARE and any(other.startswith(path + ".") for other in found):
            continue  # a wrapper of the whole trunk (timm's `stages`, an `encoder`): no point *in* the network
        if path in inside:
            continue  # inside a residual branch, before the add: the block's output is the point on the trunk
        if out.dim() == 3:
            try:
                grid = patch_grid(maps[:before], (out.shape[1], out.shape[2]))
                layout = token_layout(out.shape[1], image_hw, grid=grid)
            except FitNetsError:
                continue
            shape = (out.shape[2], *layout.grid)
        else:
            shape = tuple(out.shape[1:])
        layer = Layer(path, shape, (start + end) / 2, out.dim() == 3, (start, end))
        # the same tensor from a block and from its last layer: keep the block (it exits after)
        outputs[id(out)] = layer
    return [layer for layer in outputs.values() if 0 < layer.depth < 1]


def _branch_insides(outputs: dict[str, torch.Tensor]) -> set[str]:
    """The candidates inside a block that computes its output after them — a residual block's branch, its
    layers listed in a ``Sequential`` (Hugging Face's ``ResNetBottleNeckLayer.layer``): ``branch(x) + x`` then
    an activation. Their outputs are what the add has not yet seen, not points on the trunk; a block whose
    output is its last candidate's (a stage of blocks) is a chain, and its insides stay."""
    inside = set()
    for path in outputs:
        holders = [a for a in outputs if path.startswith(a + ".")]
        if not holders:
            continue
        holder = max(holders, key=len)   # the nearest candidate around it
        below = [outputs[d] for d in outputs if d.startswith(holder + ".")]
        if not any(d is outputs[holder] for d in below):
            inside.add(path)
    return inside


def rank(teacher_layers: list[Layer], student_layers: list[Layer]) -> list[Candidate]:
    """Every (hint, guided) pair, best first."""
    joins_by_shape: dict[tuple, tuple[str, int, bool] | None] = {}  # deep models repeat a few shapes many times

    def join(g: Layer, h: Layer) -> tuple[str, int, bool] | None:
        try:
            regressor = build_regressor(g.shape, h.shape, None)
        except FitNetsError:
            return None
        resample = len(g.shape) == 3 and needs_resampling((g.shape[1], g.shape[2]), (h.shape[1], h.shape[2]))
        joins = describe_regressor(regressor).replace(", activation none", "")
        joins = ("resampled, then " if resample else "the paper's regressor: ") + joins
        return joins, sum(p.numel() for p in regressor.parameters()), resample

    candidates = []
    for h in teacher_layers:
        for g in student_layers:
            if (g.shape, h.shape) not in joins_by_shape:
                joins_by_shape[g.shape, h.shape] = join(g, h)
            joined = joins_by_shape[g.shape, h.shape]
            if joined is None:
                continue
            joins, params, resample = joined
            score = (abs(h.depth - 0.5) + abs(g.depth - 0.5) + 0.5 * abs(h.depth - g.depth)
                     + (0.1 if resample else 0.0) + 0.01 * math.log10(max(params, 1)))
            candidates.append(Candidate(h, g, score, joins, params))
    return sorted(candidates, key=lambda c: c.score)


def probe(teacher: FrozenTeacher, student_factory, candidates: list[Candidate], data, steps: int,
          batch_size: int = 64, lr: float = 1e-3, progress: bool = True) -> None:
    """Train ``steps`` steps of each candidate's stage 1, as a run builds it (``recipes.hint_stage``; the teacher
    wrapped by ``teacher_outputs.frozen_teacher``), through the
    engine's ``train_step`` — a fresh student each time, the same batches, a constant ``lr`` — and set its ``fit``:
    the R² the stage's validation finds on ``data.val`` (``fitnets.training.evaluate.HintEval``)."""
    from itertools import count, islice

    from tqdm import tqdm

    from fitnets.core.fitnet import FitNet
    from fitnets.data.loader import batches
    from fitnets.training.config import HintStageConfig, OptimConfig
    from fitnets.training.engine import build_optimizer, train_step
    from fitnets.training.evaluate import HintEval
    from fitnets.training.recipes import hint_stage
    from fitnets.training.teacher_outputs import LiveOutputs

    example = data.train.images[:2].float()
    settings = HintStageConfig(epochs=1, optim=OptimConfig(lr=lr, schedule="constant"))
    for candidate in tqdm(candidates, desc="probe", disable=not progress, leave=False):
        torch.manual_seed(0)
        student = student_factory().to(data.train.device)
        fitnet = FitNet(teacher, student, candidate.hint.path, candidate.guided.path, example)
        stage = hint_stage(fitnet, LiveOutputs(fitnet.hint_features), settings, HintEval(fitnet, data.val, 500))
        optimizer = build_optimizer(stage.optimize, stage.optim)
        for module in stage.saves.values():
            module.train()
        stream = (batch for epoch in count() for batch in batches(data.train, batch_size, shuffle=True, epoch=epoch))
        for batch in islice(stream, steps):
            train_step(stage.step, optimizer, batch, 0)
        assert stage.validate is not None  # the hint stage validates on the held-out examples
        candidate.fit = stage.validate()[0]["val_hint_r2"]


def format_table(candidates: list[Candidate], default: tuple[str, str] | None = None) -> str:
    probed = any(c.fit is not None for c in candidates)
    lines = [f"| # | hint (teacher) | guided (student) | {'fit R² | ' if probed else ''}regressor parameters | why |",
             f"|---:|---|---|{'---:|' if probed else ''}---:|---|"]
    for i, c in enumerate(candidates, 1):
        fit = (f"{c.fit:.3f} | " if c.fit is not None else "— | ") if probed else ""
        mark = " (registry default)" if default == (c.hint.path, c.guided.path) else ""
        lines.append(f"| {i} | {c.hint.path} {c.hint.shape}{mark} | {c.guided.path} {c.guided.shape} | {fit}"
                     f"{c.regressor_params:,} | {c.reason()} |")
    return "\n".join(lines)
