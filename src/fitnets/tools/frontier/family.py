"""What a frontier is (``Frontier``: its flags) and what it resolves to before anything trains (``Family``):
its identity checked against the folder, the data and the teacher loaded once, every candidate built, its free
facts measured, its guided layer chosen and its status set (queued, outside the budget, no FitNets)."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from fitnets.errors import FitNetsError
from fitnets.tools.frontier import queue
from fitnets.tools.frontier.candidates import Candidate, build
from fitnets.tools.frontier.facts import Budget, Facts, check_budget, measure
from fitnets.tools.frontier.pairing import choose_guided
from fitnets.tools.frontier.trial import TrialData
from fitnets.training.config import RunConfig

log = logging.getLogger(__name__)

IDENTITY = "frontier.yaml"
FACTS = "facts.json"  # the free facts as first measured: a rerun shows the same latencies, and skips the timing


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
        frontier_seeds: then the (candidate, method) pairs on that method's frontier get seeds 0..N-1 (0: none).
        folder: the frontier folder (``out/name``): trial run folders, the study, the answer.
        budget: candidates outside it are listed, not trained.
        pick_speedup: the pick is the most accurate student at this speed-up (default: the budget's).
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
    frontier_seeds: int = 0
    pick_speedup: float | None = None

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
    teacher: nn.Module | None = None            # on the CPU: the guided layers are chosen against it
    example: torch.Tensor | None = None         # (2, C, H, W): two training inputs, to find shapes
    device: str = "cpu"                         # where the facts are measured
    measured: dict[str, Any] = field(default_factory=dict)  # facts.json's "facts"


def _bench(f: Frontier, device: str) -> dict[str, Any]:
    return {"batch": f.bench_batch, "repeats": f.bench_repeats, "device": device, "threads": torch.get_num_threads()}


def _measured(f: Frontier, device: str) -> dict[str, dict[str, Any]]:
    """The facts ``facts.json`` holds when they were measured the same way (batch, repeats, device), else none."""
    try:
        saved = json.loads((f.folder / FACTS).read_text())
    except (OSError, ValueError):
        return {}
    return saved.get("facts", {}) if saved.get("bench") == _bench(f, device) else {}


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
    teacher = f.teacher if f.teacher is not None else load_model(ModelRef.parse(str(f.base.teacher)), trained=True,
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
    open_study(f)  # an unreachable --storage is said now, before anything is loaded or measured
    data, teacher, device = _load(f)
    f.data.num_classes = data.train.num_classes
    x = example(data.train, 2, None).float().cpu()
    shape = tuple(x.shape[1:])
    teacher = teacher.to(device).eval()
    measured = _measured(f, str(device))
    if "teacher" not in measured:
        measured["teacher"] = measure(teacher, shape, f.bench_batch, f.bench_repeats, device).to_dict()
    t = Facts(**measured["teacher"])
    test: Any = data.test  # any split type, read as Run.execute reads it to test a student
    key: Any = f.base.logits_key
    acc = evaluate_accuracy(teacher, test, f.base.data.eval_batch_size, InputFormat(), key)["acc"]
    teacher_facts = {"name": f.base.teacher, **t.to_dict(), "test_acc": acc}
    teacher = teacher.to("cpu")
    hint = f.base.hint
    if "fitnet" in f.methods and not hint:
        try:
            hint = model_spec(str(f.base.teacher)).hint
        except FitNetsError:
            hint = None
        if not hint:
            raise FitNetsError(f"method fitnet needs the teacher's hint layer: give --hint (see `fitnets layers "
                               f"{f.base.teacher}`)")
    f.base.hint = hint
    family = Family(f, teacher_facts, {}, {}, {}, {}, shape, len(data.train), teacher=teacher, example=x,
                    device=str(device), measured=measured)
    for c in ([] if f.search else f.candidates):
        admit(family, c)
    (f.folder / FACTS).write_text(json.dumps({"bench": _bench(f, str(device)), "facts": measured}, indent=1))
    check_budget(f.budget, family.facts, {c.slug: c.label for c in f.candidates})
    return family


def admit(family: Family, c: Candidate) -> None:
    """Build ``c``, measure its free facts (or take them from ``facts.json``), choose its guided layer and set
    its status: ``queued``, or why it is not trained."""
    f = family.frontier
    model = build(c, f.data.num_classes)
    if c.slug not in family.measured:
        family.measured[c.slug] = measure(model, family.input_shape, f.bench_batch, f.bench_repeats,
                                          family.device).to_dict()
    teacher = Facts(**family.measured["teacher"])
    family.facts[c.slug] = facts = Facts(**family.measured[c.slug]).relative_to(teacher)
    family.status[c.slug] = "queued"
    if "fitnet" in f.methods:
        assert family.teacher is not None and family.example is not None and f.base.hint  # set by resolve
        pairing = choose_guided(family.teacher, f.base.hint, model.to("cpu"), c.name, family.example, f.base.guided)
        family.guided[c.slug], family.sources[c.slug] = pairing.guided, pairing.source
        if pairing.guided is None:
            family.status[c.slug] = f"no FitNets: {pairing.source}"
    miss = f.budget.misses(facts)
    if miss:
        family.status[c.slug] = f"outside the budget: {miss}"


def wanted(family: Family, seeds: list[int] | None = None,
           only: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every trial to train (of ``seeds``, by default the frontier's; ``only`` these (slug, method) pairs),
    seed-major: a first pass of one seed over every candidate comes first."""
    f, out = family.frontier, []
    if f.search:  # the sampler picks the candidates, one trial at a time
        return out
    for seed in seeds if seeds is not None else f.seeds:
        for c in f.candidates:
            if not family.status[c.slug].startswith(("queued", "no FitNets")):
                continue
            for method in f.methods:
                if method == "fitnet" and family.guided.get(c.slug) is None or (
                        only is not None and (c.slug, method) not in only):
                    continue
                out.append({"candidate": c.slug, "method": method, "seed": seed})
    return out


def open_study(f: Frontier):
    """The frontier's study; NSGA-II's generations sized to the search (half of ``--trials``, 2 to 50)."""
    from fitnets.tools.frontier.queue import open_study as open_named

    return open_named(f.folder, f.name, f.storage, f.heartbeat, population=max(2, min(50, f.search // 2)))
