"""The ``fitnets`` command line: train, distill, evaluate, layers, models, demo, report, bench, store.

Options come from the typed config (``fitnets.training.config``): defaults, then ``--config FILE`` (YAML or TOML),
then ``--set KEY=VALUE`` and the named flags. Every user mistake ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path

import torch

from fitnets.training.config import METHODS, DataConfig, RunConfig, load_config, parse_override, resume_changes
from fitnets.errors import FitNetsError

log = logging.getLogger("fitnets")

# flag -> config key, for the flags that simply set one config value
_FLAG_KEYS = {
    "student": "student", "teacher": "teacher", "method": "method", "hint": "hint", "guided": "guided",
    "epochs": "epochs", "hint_epochs": "hint_stage.epochs", "batch_size": "data.batch_size",
    "lr": "optim.lr", "optimizer": "optim.name", "data": "data.name", "data_dir": "data.dir",
    "download": "data.download", "train_size": "data.train_size", "val_size": "data.val_size",
    "seed": "seed", "device": "device", "out": "out", "name": "name", "temperature": "kd.temperature",
    "tau_squared": "kd.tau_squared", "channels_last": "channels_last", "teacher_dtype": "teacher_dtype",
    "student_dtype": "student_dtype", "compile": "compile", "tensorboard": "tensorboard",
}


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record):
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _add_run_flags(p: argparse.ArgumentParser, distill: bool) -> None:
    p.add_argument("--config", help="YAML or TOML file of config keys (flags override it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--student", "--model", dest="student",
                   help="registered model name (see `fitnets models`), or package.module:factory (your own)")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the model's, else the dataset's)")
    if distill:
        p.add_argument("--teacher", help="NAME (shipped weights) or NAME:PATH (weights file or run folder); NAME "
                                         "may be package.module:factory")
        p.add_argument("--method", choices=list(METHODS),
                       help="ce (standard backprop), kd, fitnet (the paper's two stages), fitnet-onestage (CE + β·MSE), "
                            "fitnet-onestage-kd (CE + β·MSE + KD)")
        p.add_argument("--hint", help="teacher module path of the hint layer")
        p.add_argument("--guided", help="student module path of the guided layer")
        p.add_argument("--hint-epochs", type=int, help="epochs of FitNets' stage 1")
        p.add_argument("--temperature", type=float, help="KD temperature τ (paper: 3)")
        p.add_argument("--tau-squared", action="store_true", default=None, help="Hinton's τ² factor on the KD term")
    p.add_argument("--epochs", type=int, help="epochs of the main stage")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["adam", "sgd", "rmsprop"])
    p.add_argument("--data", help="dataset: fashion-mnist or mnist")
    p.add_argument("--data-dir", help="folder with the dataset files")
    p.add_argument("--download", action="store_true", default=None, help="fetch the dataset if it is missing")
    p.add_argument("--train-size", type=int, help="train on a fixed random subset")
    p.add_argument("--val-size", type=int, help="examples held out for validation")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", help="run once per seed, e.g. 0,1,2 or 3 (= 0,1,2); one run folder each")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--channels-last", action="store_true", default=None, help="student in channels_last")
    p.add_argument("--teacher-dtype", choices=["float32", "bfloat16"], help="the teacher's weights and forward")
    p.add_argument("--student-dtype", choices=["float32", "bfloat16"], help="autocast the student's step")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the forwards")
    p.add_argument("--fast", action="store_true", help="the speed options measured safe, for this hardware: bf16 "
                   "teacher and stored outputs, bf16 student where native, channels_last, compile where a compiler "
                   "works (flags given with it win)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write the metrics as TensorBoard scalars in RUN_DIR/tensorboard (pip install "
                        "'fitnets[tensorboard]')")
    p.add_argument("--out", help="parent folder of run folders (default runs/)")
    p.add_argument("--name", help="run folder name")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (its config, then any flags)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitnets", description="FitNets: hint-based knowledge distillation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_flags(sub.add_parser("train", help="train a network with cross-entropy (e.g. a teacher)"), False)
    _add_run_flags(sub.add_parser("distill", help="train a student with ce, kd or fitnet (two stages)"), True)
    p = sub.add_parser("run", help="run an experiment file: fitnets run FILE [flags] = fitnets distill --config FILE")
    p.add_argument("file", help="YAML or TOML experiment file (see configs/)")
    _add_run_flags(p, True)
    p = sub.add_parser("evaluate", help="test accuracy of trained weights")
    p.add_argument("model", help="RUN_DIR, NAME (shipped weights) or NAME:PATH")
    p.add_argument("--data", default=None, help="dataset (default: the run's, else fashion-mnist)")
    p.add_argument("--data-dir")
    p.add_argument("--teacher", help="also report top-1 agreement and KL with this teacher (NAME or NAME:PATH)")
    p.add_argument("--device", default="auto")
    p = sub.add_parser("layers", help="every module path of a model with its output shape")
    p.add_argument("model", help="registered model name, or package.module:factory")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the model's)")
    p.add_argument("--depth", type=int, metavar="N", help="only modules at most N levels down (layer2.1 is 2)")
    p = sub.add_parser("suggest", help="candidate (hint, guided) layer pairs for a teacher and a student, best first")
    p.add_argument("teacher", help="NAME, NAME:PATH, RUN_DIR or package.module:factory[:PATH]")
    p.add_argument("student", help="registered model name or package.module:factory")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the student's, else the dataset's)")
    p.add_argument("--top", type=int, default=10, help="candidates shown")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="train N hint-stage steps for each of the top 5 and show the fit (R²) each reached")
    p.add_argument("--data", default="fashion-mnist", help="dataset of the probe")
    p.add_argument("--data-dir")
    p.add_argument("--train-size", type=int, default=5000, help="probe: training images")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("export", help="write the trained student alone: safetensors + JSON, and ONNX")
    p.add_argument("model", help="RUN_DIR, or NAME:PATH")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")
    p = sub.add_parser("report", help="Markdown table (mean ± std over seeds) and PNG figures from run folders")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", default="report", help="output folder (report.md and PNGs)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-speed", action="store_true", help="skip the measured speed-up column")
    p.add_argument("--by-name", action="store_true",
                   help="one row per run name (its folder name without -seedN), e.g. for a search over one method")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("bench", help="measurements: `bench speed` (inference, paper's Table 5), `bench step` (training)")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("speed", help="inference speed-up and compression of students over their teacher")
    p.add_argument("--teacher", help="teacher model (default: the paper's CIFAR and MNIST teachers)")
    p.add_argument("--student", action="append", help="student model (repeatable)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20, help="timed batches per model (after 3 warm-up ones)")
    p.add_argument("--device", default="auto")
    p = bench.add_parser("step", help="training throughput of each method's step, with the defaults and with --fast")
    p.add_argument("--teacher", default="paper-mnist-teacher")
    p.add_argument("--student", default="paper-mnist-fitnet")
    p.add_argument("--hint", help="teacher layer (default: the registry's)")
    p.add_argument("--guided", help="student layer (default: the registry's)")
    p.add_argument("--batch-size", type=int, default=DataConfig.batch_size)
    p.add_argument("--input-shape", help="C,H,W (default: the student's)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=30, help="steps of a timed epoch")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per row, taken in turn; each row keeps the median")
    p.add_argument("--warmup", type=int, default=10, help="steps of the untimed epoch before a row's first")
    p.add_argument("--all", action="store_true", help="also every speed option on its own (the option matrix)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants (no compiler)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print a machine-readable result")
    p = sub.add_parser("store", help="the teacher-output store (KD under augmentation): build, list, clear")
    store = p.add_subparsers(dest="store_command", required=True)
    _add_run_flags(store.add_parser("build", help="fill the store a run would use (the run's config and flags), "
                                                  "every view of every example"), True)
    store.add_parser("list", help="the stores in the cache folder ($FITNETS_CACHE, default ~/.cache/fitnets)")
    p = store.add_parser("clear", help="delete every store, or the one whose key starts with KEY")
    p.add_argument("key", nargs="?", help="a store's key (or its first characters), as `fitnets store list` shows")
    sub.add_parser("models", help="list the registered models: parameters, MACs, the paper's counts")
    p = sub.add_parser("demo", help="the paper's MNIST experiment on Fashion-MNIST: backprop vs KD vs FitNet")
    p.add_argument("--full", action="store_true", help="the longer protocol: more epochs, 3 seeds")
    p.add_argument("--seeds", type=int, help="number of seeds (default 1, or 3 with --full)")
    p.add_argument("--epochs", type=int, help="epochs per method (stage 2 for FitNet)")
    p.add_argument("--hint-epochs", type=int, help="FitNet stage-1 epochs")
    p.add_argument("--train-size", type=int, help="training examples")
    p.add_argument("--data-dir")
    p.add_argument("--no-download", dest="download", action="store_false", help="never fetch the dataset")
    p.add_argument("--out", default="runs", help="parent folder of the demo's run folders")
    p.add_argument("--fast", action="store_true", help="train with the --fast preset (see `fitnets distill --help`)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    return parser


def _config_from_args(args: argparse.Namespace, method: str | None) -> RunConfig:
    from fitnets.training.loading import config_of_run

    overrides = [parse_override(text) for text in args.set]
    overrides += [(key, getattr(args, flag)) for flag, key in _FLAG_KEYS.items()
                  if getattr(args, flag, None) is not None]
    if getattr(args, "input_shape", None):
        overrides.append(("input_shape", list(parse_shape(args.input_shape))))
    if method is not None:
        overrides.append(("method", method))
    if getattr(args, "fast", False):  # first, so that the flags and --set keys given with it win
        from fitnets.training.distributed import resolve_device
        from fitnets.training.fast import fast_options

        base = config_of_run(args.resume) if args.resume else None
        device = resolve_device(load_config(args.config, overrides, base=copy.deepcopy(base)).device)
        overrides = fast_options(device) + overrides
    if not args.resume:
        return load_config(args.config, overrides)
    saved = config_of_run(args.resume)
    config = load_config(args.config, overrides, base=copy.deepcopy(saved))
    resume_changes(saved, config)  # refused before anything is built (the run checks it again)
    return config


def parse_seeds(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FitNetsError(f"bad --seeds {text!r}: expected a count (3) or a list (0,1,2)") from None
    if len(values) == 1 and "," not in text:
        values = list(range(values[0]))
    if not values:
        raise FitNetsError(f"bad --seeds {text!r}: no seed")
    return values


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape C,H,W`` → ``(C, H, W)``; ``None`` when the flag is absent."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise FitNetsError(f"bad --input-shape {text!r}: expected C,H,W such as 3,32,32") from None


def cmd_run(args: argparse.Namespace, method: str | None) -> int:
    from fitnets.training.run import Run

    if getattr(args, "file", None):
        if args.config:
            raise FitNetsError("give the experiment file once: `fitnets run FILE` or `fitnets distill --config FILE`")
        args.config = args.file
    config = _config_from_args(args, method)
    if args.seeds and args.resume:
        raise FitNetsError("--seeds starts new runs; resume each run folder on its own with --resume")
    configs = [config]
    if args.seeds:
        configs = []
        for seed in parse_seeds(args.seeds):
            seeded = copy.deepcopy(config)
            seeded.seed = seed
            seeded.name = f"{config.name}-seed{seed}" if config.name else None
            configs.append(seeded)
    for config in configs:
        run = Run(config, run_dir=Path(args.resume) if args.resume else None, progress=not args.no_progress)
        data = run.load_data()
        if args.dry_run:
            print(run.plan(data))
            continue
        log.info("plan:\n%s", run.plan(data))
        try:
            results = run.execute(resume=bool(args.resume), data=data)
        except KeyboardInterrupt:
            if (run.run_dir / "last.safetensors").is_file():
                print(f"interrupted; the last finished epoch is saved. Continue with: fitnets "
                      f"{args.command if args.command != 'run' else 'distill'} --resume {run.run_dir}",
                      file=sys.stderr)
            else:
                print("interrupted before the first epoch finished: nothing was saved; start the run again",
                      file=sys.stderr)
            return 130
        print(f"{results['method']} {results['student']} seed {config.seed}: test accuracy "
              f"{results['test_acc']:.4f} ({results['train_time_s']:.0f}s); run folder {run.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fitnets.core.inputs import InputFormat
    from fitnets.core.teacher import FrozenTeacher
    from fitnets.data.loader import load_dataset
    from fitnets.training.distributed import resolve_device
    from fitnets.training.evaluate import evaluate_accuracy, evaluate_agreement
    from fitnets.training.loading import ModelRef, load_data, load_model

    device = resolve_device(args.device)
    ref = ModelRef.parse(args.model)
    model = load_model(ref, trained=True, flag="fitnets evaluate").to(device)
    inputs, logits_key = InputFormat(), None
    if ref.run is not None:  # from a run folder: its dataset, preprocessing, input format and logits rule
        config = ref.run
        logits_key = config.logits_key
        config.data.name = args.data or config.data.name
        config.data.dir = args.data_dir or config.data.dir
        test = load_data(config, device).test
        inputs = InputFormat(channels_last=config.channels_last)
    else:
        test = load_dataset(args.data or "fashion-mnist", "test", args.data_dir).to(device)
    result = evaluate_accuracy(model, test, inputs=inputs, logits_key=logits_key)
    line = f"{args.model}: test accuracy {result['acc']:.4f}, loss {result['loss']:.4f} ({len(test)} images)"
    if args.teacher:
        teacher = FrozenTeacher(load_model(args.teacher, trained=True).to(device), fold_bn=True)
        agreement = evaluate_agreement(model, teacher, test, inputs=inputs, logits_key=logits_key)
        line += f"; with the teacher: top-1 agreement {agreement['agreement']:.4f}, KL {agreement['kl']:.4f}"
    print(line)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from fitnets.models.registry import create_model, model_spec
    from fitnets.core.taps import trace

    model = create_model(args.model).eval()
    shape = parse_shape(args.input_shape) or model_spec(args.model).input_shape
    if not shape:
        raise FitNetsError(f"the input shape of {args.model} is not known: give --input-shape C,H,W")
    if args.depth is not None and args.depth < 1:
        raise FitNetsError("--depth must be ≥ 1")
    rows = trace(model, torch.zeros(1, *shape), args.depth)
    modules = dict(model.named_modules())
    width = max(len(r[0]) for r in rows)
    print(f"{'path':<{width}}  {'type':<14} {'params':>9}  output (without batch)")
    for path, kind, out in rows:
        params = sum(p.numel() for p in modules[path].parameters())
        print(f"{path:<{width}}  {kind:<14} {params:>9,}  {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fitnets.tools.export import export_student
    from fitnets.training.loading import ModelRef, input_shape, load_model

    ref = ModelRef.parse(args.model)
    model, name, model_args = load_model(ref, trained=True, flag="fitnets export"), ref.name, ref.model_args
    info = export_student(model, name, args.out, model_args, onnx=not args.no_onnx,
                          logits_key=ref.run.logits_key if ref.run is not None else None,
                          input_shape=input_shape(ref.run) if ref.run is not None else None)
    parity = (f"; ONNX Runtime vs PyTorch max abs diff {info['onnx_max_abs_diff']:.2e}"
              if "onnx_max_abs_diff" in info else "")
    files = ", ".join(info[k] for k in ("weights", "onnx") if k in info)
    print(f"exported {name} ({info['parameters']:,} parameters) to {args.out}: {files}, model.json{parity}")
    return 0


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def cmd_bench(args: argparse.Namespace) -> int:
    from fitnets.tools.bench import (DEFAULT_PAIRS, bench_speed, bench_step, fast_settings, format_speed_table,
                                     format_step_table)
    from fitnets.training.distributed import resolve_device

    if args.bench == "step":
        if min(args.rounds, args.steps, args.batch_size, args.num_classes) < 1 or args.warmup < 0:
            raise FitNetsError("--rounds, --steps, --batch-size and --num-classes must be ≥ 1, --warmup ≥ 0")
        device = resolve_device(args.device)
        rows, ratios = bench_step(args.teacher, args.student, args.batch_size, parse_shape(args.input_shape),
                                  args.num_classes, args.steps, args.warmup, device, args.hint, args.guided,
                                  compile=not args.no_compile, rounds=args.rounds, matrix=args.all,
                                  progress=not args.json)
        context = {"teacher": args.teacher, "student": args.student, "batch_size": args.batch_size,
                   "device": _hardware(device), "torch": torch.__version__, "steps": args.steps,
                   "warmup": args.warmup, "rounds": args.rounds, "fast": fast_settings(device, not args.no_compile)}
        if args.json:
            print(json.dumps({**context, "rows": [r.__dict__ for r in rows], "ratios": ratios}, indent=2))
            return 0
        print(format_step_table(rows, ratios))
        print(f"\n{args.teacher} → {args.student}, batch {args.batch_size}, {_hardware(device)}, torch "
              f"{torch.__version__}; --fast here: {', '.join(f'{k}={v}' for k, v in context['fast'].items())}. "
              f"Each row: the median of {args.rounds} epoch(s) of {args.steps} steps timed as a run times its epochs "
              f"(after one of {args.warmup} untimed steps), synthetic data.")
        return 0

    if min(args.batch_size, args.repeats) < 1:
        raise FitNetsError("--batch-size and --repeats must be ≥ 1")
    if bool(args.teacher) != bool(args.student):
        raise FitNetsError("give both --teacher and --student, or neither (the paper's pairs)")
    pairs = {args.teacher: args.student} if args.teacher else DEFAULT_PAIRS
    device = resolve_device(args.device)
    rows = bench_speed(pairs, args.batch_size, args.repeats, device)
    print(format_speed_table(rows))
    print(f"\n{_hardware(device)}, torch {torch.__version__}, batch {args.batch_size}, median of {args.repeats} timed batches "
          "after 3 warm-up ones; paper's figures (Table 5, CIFAR-10, GPU) in parentheses.")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fitnets.tools.report import write_report

    path = write_report(args.runs, args.out, figures=not args.no_figures, speed=not args.no_speed, device=args.device,
                        by_name=args.by_name)
    print(path.read_text().split("\n![")[0].rstrip())
    print(f"\nwritten: {path}")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from fitnets.training import store

    if args.store_command == "list":
        found = store.list_stores()
        if not found:
            print(f"no teacher-output stores in {store.stores_dir()}")
            return 0
        print(f"| key | teacher | data | examples × views | classes | dtype | size | filled | created |\n"
              f"|---|---|---|---:|---:|---|---:|---:|---|")
        for info in found:
            m = info.meta
            if m.get("damaged"):
                print(f"| {info.path.name} | damaged (rebuilt when a run next uses it; or `fitnets store clear "
                      f"{info.path.name}`) | | | | | | | |")
                continue
            print(f"| {info.path.name} | {m.get('teacher', '?')} | {m.get('data', '?')} | {m['examples']:,} × "
                  f"{m['views']} | {m['width']} | {m['dtype']} | {store.human_size(info.size_bytes)} | "
                  f"{100 * info.filled / max(info.slots, 1):.1f}% | {m.get('created', '?')} |")
        print(f"\nin {store.stores_dir()}")
        return 0
    if args.store_command == "clear":
        removed = store.clear_stores(key=args.key)
        print(f"deleted {len(removed)} store(s) from {store.stores_dir()}")
        return 0
    return cmd_store_build(args)


def cmd_store_build(args: argparse.Namespace) -> int:
    from fitnets.training import distributed
    from fitnets.training.run import Run
    from fitnets.training.store import StoredOutputs, fill, human_size

    config = _config_from_args(args, None)
    if config.method == "ce":
        raise FitNetsError("method ce has no teacher: there is nothing to store")
    if not (config.data.pad or config.data.flip):
        raise FitNetsError("this run has no random augmentation (data.pad, data.flip): it computes the teacher's "
                           "logits once per example at its start, no store is needed")
    if not config.store.enabled:
        raise FitNetsError("store.enabled is false in this config: the run would not read a store")
    run = Run(config, progress=not args.no_progress)
    data = run.load_data()
    outputs = run.teacher_logits(data)
    if not isinstance(outputs, StoredOutputs):
        raise FitNetsError("this run cannot use a store (the log above says why)")
    views, n, epochs = outputs.aug.views, len(data.train), config.epochs
    log.info("store build: %s examples × %d views = %s teacher forwards; a live run of %d KD epochs spends %s, so "
             "building pays off once the runs that read the store train more than %d KD epochs in all",
             f"{n:,}", views, f"{n * views:,}", epochs, f"{n * epochs:,}", views)
    if args.dry_run:
        print(f"would fill {n * views:,} slots ({human_size(outputs.size_bytes())})")
        return 0
    done, total = fill(outputs, config.data.eval_batch_size, progress=not args.no_progress)
    if distributed.current().enabled:  # every rank's views written before the count
        import torch.distributed as dist

        dist.barrier()
    if distributed.current().is_main:
        print(f"store {outputs.slots.path}: {outputs.slots.filled():,} of {total:,} slots filled ({done:,} now by "
              f"{'this process' if not distributed.current().enabled else 'rank 0'})")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from fitnets.models.registry import create_model, model_spec
    from fitnets.tools import suggest
    from fitnets.training.config import load_config
    from fitnets.training.distributed import resolve_device
    from fitnets.training.loading import ModelRef, input_shape, load_data, load_model

    if args.top < 1 or args.probe < 0:
        raise FitNetsError("--top must be ≥ 1 and --probe ≥ 0")
    device = resolve_device(args.device)
    config = load_config(None, [("student", args.student), ("teacher", args.teacher), ("data.name", args.data),
                                ("data.dir", args.data_dir), ("data.train_size", args.train_size),
                                ("data.val_size", 1000), ("data.test_size", 1)]
                         + ([("input_shape", list(parse_shape(args.input_shape)))] if args.input_shape else []))
    shape = input_shape(config)
    teacher = load_model(args.teacher, trained=args.probe > 0).to(device).eval()
    student = create_model(args.student).to(device)
    x = torch.zeros(2, *shape, device=device)
    candidates = suggest.rank(suggest.layers(teacher, x), suggest.layers(student, x))
    if not candidates:
        raise FitNetsError(f"no pair of {args.teacher}'s and {args.student}'s layers can be joined (no layer or block "
                           "outputs a map or a token sequence); name layers by hand (`fitnets layers`)")
    default = None
    teacher_spec, student_spec = (model_spec(ModelRef.parse(args.teacher).name), model_spec(args.student))
    if teacher_spec.hint and student_spec.guided:
        default = (teacher_spec.hint, student_spec.guided)
    shown = candidates[:args.top]
    if args.probe:
        data = load_data(config, device)
        suggest.probe(teacher, lambda: create_model(args.student), shown[:5], data, args.probe,
                      progress=not args.no_progress)
    print(suggest.format_table(shown, default))
    if default is not None:
        at = next((i for i, c in enumerate(candidates, 1) if (c.hint.path, c.guided.path) == default), None)
        where = f"ranks #{at} of {len(candidates)}" if at else "cannot be joined by the rule"
        print(f"\nThe registry's default pair ({default[0]} → {default[1]}) {where}.")
    if args.probe:
        best = max((c for c in shown if c.fit is not None), key=lambda c: c.fit)
        print(f"Best fit after {args.probe} hint steps on {args.data}: {best.hint.path} → {best.guided.path} "
              f"(R² {best.fit:.3f}): --hint {best.hint.path} --guided {best.guided.path}")
    return 0


def cmd_models(_args: argparse.Namespace) -> int:
    from fitnets.models.registry import create_model, list_models, model_spec
    from fitnets.tools.profile import count_macs, count_parameters

    print(f"{'model':<22} {'params':>11} {'MACs/image':>12}  {'paper count':>22}  layers / description")
    for name in list_models():
        spec = model_spec(name)
        model = create_model(name)
        paper = ""
        if spec.paper_kwargs is not None:  # the paper's convention: weights only, maxout layers with 2 pieces
            as_paper = create_model(name, **spec.paper_kwargs)
            paper = (f"{count_parameters(as_paper, weights_only=True):,} / "
                     f"{count_macs(as_paper, spec.input_shape) / 1e6:.1f}M")
        extra = [f"hint={spec.hint}"] if spec.hint else []
        extra += [f"guided={spec.guided}"] if spec.guided else []
        extra += ["shipped weights"] if spec.pretrained else []
        print(f"{name:<22} {count_parameters(model):>11,} {count_macs(model, spec.input_shape) / 1e6:>11.1f}M  "
              f"{paper:>22}  {' '.join(extra)}  {spec.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    try:
        if args.command in ("train", "distill", "run"):
            return cmd_run(args, "ce" if args.command == "train" else None)
        if args.command == "demo":
            from fitnets.tools.demo import cmd_demo

            return cmd_demo(args)
        commands = {"evaluate": cmd_evaluate, "layers": cmd_layers, "models": cmd_models, "export": cmd_export,
                    "bench": cmd_bench, "report": cmd_report, "store": cmd_store, "suggest": cmd_suggest}
        return commands[args.command](args)
    except FitNetsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:  # torch.compile's own failures (no C++ compiler, an unsupported op): one line
        if not type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        cause = getattr(err, "inner_exception", None) or err  # BackendCompilerFailed wraps the backend's error
        first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
        print(f"error: torch.compile failed: {type(cause).__name__}: {first} — run without --compile", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
