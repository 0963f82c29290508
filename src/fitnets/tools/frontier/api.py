"""``fitnets.frontier(teacher, candidates, train, ...)``: the frontier in Python, the engine
``fitnets frontier`` runs; and the two steps the command line shares with it (``frontier_from``, ``plan``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fitnets.errors import FitNetsError
from fitnets.tools.frontier import engine, family
from fitnets.tools.frontier.candidates import (
    Candidate,
    check_arguments,
    parse_candidates,
)
from fitnets.tools.frontier.facts import Budget
from fitnets.tools.frontier.trial import TrialData
from fitnets.training.config import RunConfig


def frontier_from(config: RunConfig, words: list[str], *, grids: list[str] | None = None,
                  methods: list[str], seeds: list[int], folder: Path, budget: Budget | None = None, screen: int = 0,
                  keep: int | None = None, trials: int = 0, jobs: int = 1, storage: str | None = None,
                  heartbeat: int = 60, bench_batch: int = 128, bench_repeats: int = 10, progress: bool = False,
                  figure: bool = True, teacher: nn.Module | None = None, data: TrialData | None = None,
                  modules: list[nn.Module] | None = None, frontier_seeds: int = 0,
                  pick_speedup: float | None = None) -> family.Frontier:
    """A ``Frontier`` from the command line's words (``CANDIDATE [KEY=V1,V2 ...] ...``) and ``--grid``s; each
    candidate's keyword arguments checked against its factory here, before anything is built."""
    space: dict[str, list[Any]] = {}
    if trials:
        from fitnets.tools.frontier.candidates import parse_grid

        specs = [w for w in words if "=" not in w]
        if len(specs) != 1:
            raise FitNetsError("--trials searches one factory's keyword space: give exactly one candidate "
                               "(package.module:factory or NAME) and its values as --grid KEY=V1,V2")
        space = dict(parse_grid(g) for g in (grids or []) + [w for w in words if "=" in w])
        if not space:
            raise FitNetsError("--trials needs a space to search: --grid KEY=V1,V2 for the factory's arguments")
        candidates = [Candidate(specs[0])]
    else:
        candidates = parse_candidates(words, grids) if words else []
    for m in modules or []:  # named by class (and position, when two share a class)
        name = f"python:{type(m).__module__}.{type(m).__qualname__}"
        twins = [n for n in modules or [] if type(n) is type(m)]
        candidates.append(Candidate(name + (f"#{twins.index(m) + 1}" if len(twins) > 1 else ""), module=m))
    if not candidates:
        raise FitNetsError("no candidate: name at least one student (NAME, NAME:PATH, RUN_DIR or "
                           "package.module:factory)")
    for c in candidates:
        if c.module is None:
            check_arguments(c)
            if trials:
                for key, values in space.items():
                    for value in values:
                        check_arguments(Candidate(c.spec, {key: value}))
    if (keep or 0) > len(candidates):
        raise FitNetsError(f"--keep {keep} is more than the {len(candidates)} candidates")
    return family.Frontier(config, candidates, Path(folder), list(methods), list(seeds), teacher, data or TrialData(),
                           budget or Budget(), screen, keep, trials, space, jobs, storage, heartbeat, bench_batch,
                           bench_repeats, progress, figure, frontier_seeds, pick_speedup)


def plan(f: family.Frontier) -> str:
    """What the frontier will do (``--dry-run``): each candidate's free facts, guided layer and status, and what
    the teacher costs the family against its runs one by one."""
    resolved = family.resolve(f)
    t = resolved.teacher_facts
    lines = [(f"teacher  {t['name']}: {t['params']:,} parameters, {t['macs'] / 1e6:.2f}M MACs, "
             f"{t['latency_ms']:.2f} ms per batch of {f.bench_batch}, test accuracy {100 * t['test_acc']:.2f}%"),
             "", "| candidate | params | MACs | latency ms | speed-up | compression | guided (from) | status |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for c in f.candidates:
        x = resolved.facts[c.slug]
        guided = "—"
        if resolved.guided.get(c.slug):
            guided = f"{resolved.guided.get(c.slug)} ({resolved.sources.get(c.slug)})"
        lines.append(f"| {c.label} | {x.params:,} | {x.macs / 1e6:.2f}M | {x.latency_ms:.2f} | {x.speedup:.2f} | "
                     f"{x.compression:.2f} | {guided} | {resolved.status[c.slug]} |")
    trials = family.wanted(resolved)
    n, classes = resolved.train_examples, f.data.num_classes or 0
    fitnets_runs = sum(1 for t in trials if t["method"] == "fitnet")
    teacher_runs = sum(1 for t in trials if t["method"] != "ce")
    lines += ["", (f"trials   {len(trials)} ({len(f.methods)} method(s) × {len(f.seeds)} seed(s) over the candidates "
                  f"kept){'; a screen of ' + str(f.screen_steps) + ' KD steps each first' if f.screen_steps else ''}"),
              (f"teacher  logits of the {n:,} training examples once for the family, in the teacher-output store "
              f"({n * (classes * 4 + 8) / 2**20:.1f} MB), instead of once per run ({teacher_runs} runs read them); "
              f"hint features computed once per FitNets run ({fitnets_runs} runs), not stored{_hint_size(resolved)}"),
              f"folder   {f.folder} (study: {f.storage or f.folder / 'study.db'})"]
    return "\n".join(lines)


def _hint_size(resolved: family.Family) -> str:
    """What storing the teacher's hint for every training example would take (not done: see docs/results.md)."""
    f = resolved.frontier
    if "fitnet" not in f.methods or resolved.teacher is None or resolved.example is None:
        return ""
    from fitnets.core.taps import tap

    with torch.no_grad():
        hint = tap(resolved.teacher.eval(), resolved.example, [str(f.base.hint)])[0]
    size = resolved.train_examples * hint[0].numel() * 4
    return f" (storing them would take {size / 2**20:.1f} MB: {tuple(hint.shape[1:])} per example, fp32)"


def run(f: family.Frontier) -> tuple[dict[str, Any], str]:
    return engine.run(f)


def frontier(teacher: nn.Module | str, candidates: list, train=None, *, val=None, test=None,
             grid: dict[str, list] | None = None, methods: list[str] | str = "fitnet", seeds: int | list[int] = 1,
             min_speedup: float | None = None, max_params: int | None = None, max_macs: int | None = None,
             max_latency_ms: float | None = None, screen: int = 0, keep: int | None = None, trials: int = 0,
             jobs: int = 1, storage: str | None = None, heartbeat: int = 60, num_classes: int | None = None,
             config: RunConfig | str | None = None, overrides: dict[str, Any] | None = None, progress: bool = False,
             figure: bool = True, frontier_seeds: int = 0, pick_speedup: float | None = None,
             **flags) -> dict[str, Any]:
    """Which student? Train a family of candidate students against one teacher and return the frontier.

    Args:
        teacher: the trained teacher, an ``nn.Module`` or a model name as the CLI takes it.
        candidates: the students: model names in the CLI's forms (``"resnet8"``, ``"pkg.mod:factory"``,
            ``"NAME:PATH"``, a run folder), ``(name, {keyword: value or [values]})`` pairs, or ``nn.Module``
            objects (trained in this process: ``jobs=1``).
        train, val, test: your ``Dataset`` objects (as ``fitnets.distill`` takes them), or ``None`` for a
            built-in dataset by name (``data="fashion-mnist"``, ``data_dir=...``).
        grid: keyword values applied to every named candidate: ``{"width": [8, 16, 32]}``.
        methods, seeds: trained per candidate (``seeds=3`` → 0, 1, 2).
        frontier_seeds: then each (candidate, method) on its method's frontier is trained with seeds 0..N-1.
        min_speedup, max_params, max_macs, max_latency_ms: the budget (students outside it are not trained).
        pick_speedup: name the most accurate student at this speed-up (default: ``min_speedup``).
        screen, keep: a KD run of ``screen`` steps per candidate ranks them; the best ``keep`` go on.
        trials: with one named candidate and ``grid``, ``trials`` sampled by NSGA-II instead of the whole grid.
        jobs, storage, heartbeat: worker processes, the study's storage URL, Optuna's heartbeat.
        config, overrides, **flags: every ``fitnets.distill`` option (``epochs``, ``hint_epochs``, ``out``,
            ``name``, ...), for every trial.

    Returns:
        The answer, as ``frontier.json`` holds it (``out/name/``, with ``frontier.md`` and ``frontier.png``).

    Raises:
        FitNetsError: a bad input, in one line (nothing trained).

    Example:
        >>> answer = fitnets.frontier("paper-mnist-teacher", ["fmnist-depth5", "paper-mnist-fitnet"],
        ...                           methods="fitnet,kd", data="fashion-mnist", epochs=2, name="which")
    """
    from fitnets.api import DATA_FLAGS, _config, _model_name
    from fitnets.training.config import flag_overrides, load_config

    methods = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    flags = dict(flags)
    data_flags = {k: flags.pop(k) for k in DATA_FLAGS if flags.get(k) is not None}  # a built-in dataset by name
    if data_flags and train is not None:
        raise FitNetsError(f"fitnets.frontier() cannot use {next(iter(data_flags))}=: the data is the Dataset "
                           "objects given (train, val=, test=)")
    base = _config("frontier", config, overrides, flags, [("teacher", _model_name(teacher, "teacher"))], val)
    if data_flags:
        base = load_config(None, flag_overrides(data_flags, []), base=base)
    words, modules = [], []
    for c in candidates:
        if isinstance(c, nn.Module):
            modules.append(c)
        elif isinstance(c, tuple):
            words += [c[0]] + [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in c[1].items()]
        else:
            words.append(str(c))
    if modules and jobs > 1:
        raise FitNetsError("candidates given as nn.Module objects train in this process: jobs=1 (or name them)")
    grids = [f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in (grid or {}).items()]
    folder = Path(base.out) / (base.name or "frontier")
    budget = Budget(min_speedup, max_params, max_macs, max_latency_ms)
    f = frontier_from(copy.deepcopy(base), words, grids=grids, methods=methods, seeds=seeds, folder=folder,
                      budget=budget, screen=screen, keep=keep, trials=trials, jobs=jobs, storage=storage,
                      heartbeat=heartbeat, progress=progress, figure=figure,
                      teacher=teacher if isinstance(teacher, nn.Module) else None,
                      data=TrialData(train, val, test, num_classes), modules=modules,
                      frontier_seeds=frontier_seeds, pick_speedup=pick_speedup)
    return engine.run(f)[0]
