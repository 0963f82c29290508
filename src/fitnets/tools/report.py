"""``fitnets report RUN_DIR...``: a Markdown table over runs (mean ± std over seeds) and PNG figures —
training curves of each stage, and accuracy against parameters and multiply-accumulates (the paper's
trade-off picture, Figure 2/3). Figures need matplotlib (``pip install 'fitnets[report]'``)."""

from __future__ import annotations

import functools
import json
import logging
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fitnets.core.profile import count_macs, count_parameters
from fitnets.core.timing import inference_throughput
from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model
from fitnets.training import loading
from fitnets.training.config import RunConfig
from fitnets.training.loading import ModelRef
from fitnets.training.run_folder import read_metrics

log = logging.getLogger(__name__)


@dataclass
class RunRecord:
    run_dir: Path
    results: dict
    metrics: list[dict]
    config: RunConfig = field(default_factory=RunConfig)  # the resolved config the run was started with

    @property
    def model_args(self) -> dict:
        return self.config.model_args

    @property
    def name(self) -> str:
        """The run's name without its ``-seedN`` suffix: the runs of one configuration share it."""
        return re.sub(r"-seed\d+$", "", self.run_dir.name)

    def teacher_args(self) -> dict:
        """The teacher's constructor arguments as the run built it: its run folder's, then ``teacher_args``;
        a run that recorded neither gave the teacher the student's number of classes."""
        args = {**ModelRef.parse(self.results["teacher"]).model_args, **self.config.teacher_args}
        if not args and "num_classes" in self.model_args:
            args = {"num_classes": self.model_args["num_classes"]}
        return args

    def input_shape(self) -> tuple[int, ...]:
        """One example's shape as the run fed it: as it recorded it, else by the rule the run itself used."""
        if self.results.get("input_shape"):
            return tuple(self.results["input_shape"])
        try:
            return loading.input_shape(self.config)
        except FitNetsError:
            raise FitNetsError(f"{self.run_dir} does not record the input shape it fed (a run made before runs "
                               "recorded it): add input_shape: [C, H, W] to its config.yaml") from None

    def size(self, role: str) -> tuple[int | None, int | None]:
        """Parameters and multiply-accumulates of the run's ``"student"`` or ``"teacher"``: as the run recorded
        them (``fitnets.training.record``), else counted on the model built again by its name (a run made
        before runs recorded them); ``None`` for what neither gives."""
        prefix = "" if role == "student" else "teacher_"
        if self.results.get(f"{prefix}macs") is not None or self.results[role].startswith("python:"):
            return self.results.get(f"{prefix}parameters"), self.results.get(f"{prefix}macs")
        name = self.results[role] if role == "student" else ModelRef.parse(self.results[role]).name
        args = self.model_args if role == "student" else self.teacher_args()
        return _counts(name, _key(args), self.input_shape())

    def rebuildable(self) -> bool:
        """Whether report can build the run's models again by their names (not ``python:`` objects)."""
        return not any(str(self.results.get(role) or "").startswith("python:") for role in ("student", "teacher"))


def _json_object(text: str, where: str, fix: str) -> dict:
    """``text`` read as a JSON object; a one-line ``FitNetsError`` naming ``where`` (a file, or a file's line)
    and ``fix`` if it is not one."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise FitNetsError(f"{where} is damaged ({err}): {fix}") from None
    if not isinstance(value, dict):
        raise FitNetsError(f"{where} is damaged (a JSON {type(value).__name__}, not an object): {fix}")
    return value


def read_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise FitNetsError(f"{run_dir} has no results.json: not a finished run folder")
    results = _json_object(path.read_text(), str(path), "restore it from a copy, or leave the run out")
    config = loading.config_of_run(run_dir) if (run_dir / "config.yaml").is_file() else RunConfig()
    return RunRecord(run_dir, results, read_metrics(run_dir / "metrics.jsonl"), config)


def _distinct(run_dirs: list[str | Path]) -> list[Path]:
    """``run_dirs`` without repeats, by resolved path (``A``, ``A/`` and ``./x/../A`` are one run, which must
    not count as two seeds); each repeat is logged."""
    given: dict[Path, list[str]] = {}
    for d in run_dirs:
        given.setdefault(Path(d).resolve(), []).append(str(d))
    for names in given.values():
        if len(names) > 1:
            log.warning("run folder %s given %d times: counted once", names[0], len(names))
    return [Path(names[0]) for names in given.values()]


def _mean_std(values: list[float], scale: float = 100.0) -> str:
    if len(values) == 1:
        return f"{scale * values[0]:.2f}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


@dataclass
class Group:
    key: tuple
    runs: list[RunRecord]

    @property
    def label(self) -> str:
        dataset, method, student, teacher = self.key[:4]
        return f"{student} ({method})"


def group_runs(runs: list[RunRecord], by_name: bool = False) -> list[Group]:
    """Runs that differ only by seed form a group: same dataset, method, student and teacher — and, with
    ``by_name``, the same run name (so that configurations of one method, e.g. a search, stay apart)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for run in runs:
        r = run.results
        teacher = ModelRef.parse(r["teacher"]).name if r.get("teacher") else ""
        key = (r.get("dataset", "?"), r["method"], r["student"], teacher)
        groups[key + ((run.name,) if by_name else ())].append(run)
    return [Group(k, sorted(v, key=lambda r: r.results.get("seed", 0))) for k, v in sorted(groups.items())]


# Groups share models (one teacher, the same student under three methods): each model is built, counted and
# timed once per report, keyed by its name and constructor arguments.

@functools.cache
def _counts(name: str, args_json: str, shape: tuple[int, ...]) -> tuple[int, int]:
    model = create_model(name, **json.loads(args_json))
    return count_parameters(model), count_macs(model, shape)


@functools.cache
def _throughput(name: str, args_json: str, shape: tuple[int, ...], device: str) -> float:
    model = create_model(name, **json.loads(args_json)).to(device)
    return inference_throughput(model, shape, 64, 5, device=device)


def _key(model_args: dict) -> str:
    return json.dumps(model_args, sort_keys=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _seeds(group: Group) -> str:
    """The "seeds" cell: how many seeds the group's runs hold — "1 (2 runs)", with a warning, when folders
    repeat a seed (a copy, or the same configuration run twice), whose spread is not a spread over seeds."""
    seeds = [r.results.get("seed") for r in group.runs]
    for seed in sorted({s for s in seeds if seeds.count(s) > 1}, key=str):
        log.warning("%s hold the same seed %s: counted as %d runs of one seed", ", ".join(
            str(r.run_dir) for r in group.runs if r.results.get("seed") == seed), seed, seeds.count(seed))
    distinct = len(set(seeds))
    return str(distinct) if distinct == len(seeds) else f"{distinct} ({len(seeds)} runs)"


def markdown_table(groups: list[Group], speed: bool = True, device: str = "cpu") -> str:
    """One row per group (see ``group_runs``): test accuracy mean ± std over seeds, the validation accuracy the
    kept student was selected by, the selected and the last epoch, the training time of one run, parameters,
    MACs, compression and measured inference speed-up over the teacher."""
    by_name = any(len(g.key) > 4 for g in groups)
    head = ["run"] if by_name else []
    head += ["dataset", "method", "student", "teacher", "seeds", "test acc (%)", "val acc (%)", "selected epoch",
             "last epoch", "time per run", "params", "MACs", "compression", "speed-up"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) - 10) + "---:|" * 10]  # numbers from "seeds" on
    for g in groups:
        dataset, method, student, teacher = g.key[:4]
        run = g.runs[0]
        accs = [r.results["test_acc"] for r in g.runs]
        main = [r.results.get("stages", {}).get("main", {}) for r in g.runs]
        vals = [m["best_score"] for m in main if "best_score" in m]
        selected = [m.get("best_epoch", 0) for m in main]
        last = [max((m["epoch"] for m in r.metrics if m["stage"] == "main"), default=0) for r in g.runs]
        times = [r.results["train_time_s"] for r in g.runs if "train_time_s" in r.results]
        params, macs = run.size("student")
        compression = speedup = "–"
        if teacher:
            t_params, _ = run.size("teacher")
            compression = f"{t_params / params:.1f}×" if t_params and params else "–"
            timed = run.results.get("speed", {})
            if speed and run.rebuildable():
                shape, s_args, t_args = run.input_shape(), _key(run.model_args), _key(run.teacher_args())
                ratio = _throughput(student, s_args, shape, device) / _throughput(teacher, t_args, shape, device)
                speedup = f"{ratio:.2f}×"
            elif speed and "teacher_images_per_s" in timed:   # objects: timed by the run, where it ran
                speedup = f"{timed['student_images_per_s'] / timed['teacher_images_per_s']:.2f}× ({timed['device']})"
            elif speed:
                log.info("%s: speed-up not measured — its models were Python objects, which report cannot build "
                         "again, and the run (made before runs timed them) did not time them", run.run_dir)
        seeds = _seeds(g)
        sel = statistics.mean(selected) if any(selected) else 0
        cells = [g.key[4]] if by_name else []
        cells += [dataset, method, student, teacher or "–", seeds, _mean_std(accs),
                  _mean_std(vals) if vals else "–", f"{sel:.0f}", f"{statistics.mean(last):.0f}",
                  _minutes(statistics.mean(times)) if times else "–", f"{params:,}" if params is not None else "–",
                  f"{macs / 1e6:.1f}M" if macs is not None else "–",
                  compression, speedup]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FitNetsError("figures need matplotlib: pip install 'fitnets[report]' (or pass --no-figures)") from None
    return plt


def plot_curves(run: RunRecord, path: Path) -> None:
    """Loss and validation metric against epoch, one column per stage."""
    plt = _pyplot()
    stages = list(dict.fromkeys(m["stage"] for m in run.metrics))
    fig, axes = plt.subplots(2, max(len(stages), 1), figsize=(5 * max(len(stages), 1), 6), squeeze=False)
    for col, stage in enumerate(stages):
        rows = [m for m in run.metrics if m["stage"] == stage]
        epochs = [m["epoch"] for m in rows]
        for key in ("loss", "task_loss", "kd_loss", "hint_loss", "hint_mse", "val_hint_loss"):
            if key in rows[0]:
                axes[0][col].plot(epochs, [m[key] for m in rows], label=key)
        axes[0][col].set_title(f"stage {stage}: losses")
        axes[0][col].legend()
        # 0–1 scale: accuracies, and the hint stage's fit (R², the share of the hint's variance explained)
        for key in ("val_acc", "train_acc", "val_hint_r2"):
            if key in rows[0]:
                axes[1][col].plot(epochs, [m[key] for m in rows], label=key)
        axes[1][col].set_xlabel("epoch")
        axes[1][col].legend()
    fig.suptitle(f"{run.results['student']} ({run.results['method']}, seed {run.results.get('seed')})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tradeoff(groups: list[Group], path: Path) -> None:
    """Test accuracy against parameters and against MACs, one point per group with its std as error bar."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    # One colour per method, one marker per student, so that a method's points read as one series.
    methods = sorted({g.key[1] for g in groups})
    students = sorted({g.key[2] for g in groups})
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    markers = {s: "osD^v<>phX*"[i % 11] for i, s in enumerate(students)}
    for g in groups:
        params, macs = g.runs[0].size("student")
        if params is None or macs is None:
            continue   # a cost the run did not record and report cannot measure: no point to place
        accs = [100 * r.results["test_acc"] for r in g.runs]
        err = statistics.stdev(accs) if len(accs) > 1 else 0.0
        for ax, x in zip(axes, (params, macs)):
            ax.errorbar(x, statistics.mean(accs), yerr=err, fmt=markers[g.key[2]], color=colours[g.key[1]],
                        capsize=3, label=g.label)
    axes[0].set_xlabel("parameters")
    axes[1].set_xlabel("multiply-accumulates per image")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(run_dirs: list[str | Path], out_dir: str | Path, figures: bool = True, speed: bool = True,
                 device: str = "cpu", by_name: bool = False) -> Path:
    runs = [read_run(d) for d in _distinct(run_dirs)]
    if not runs:
        raise FitNetsError("no run folders given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs, by_name)
    text = "# fitnets report\n\n" + markdown_table(groups, speed, device) + "\n"
    if figures:
        for run in runs:
            name = f"curves-{run.run_dir.name}.png"
            plot_curves(run, out / name)
            text += f"\n![{run.run_dir.name}]({name})"
        plot_tradeoff(groups, out / "tradeoff.png")
        text += "\n\n![accuracy against size](tradeoff.png)\n"
    (out / "report.md").write_text(text)
    return out / "report.md"
