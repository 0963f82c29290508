"""``fitnets evaluate MODEL``: the test accuracy of trained weights, and optionally their agreement with a
teacher."""

from __future__ import annotations

import argparse

from fitnets.tools.commands.flags import DATASETS_HELP, DEFAULT, DEVICE_HELP, MODEL_FORMS


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of trained weights")
    p.add_argument("model", help=f"trained weights: {MODEL_FORMS} (NAME alone: its shipped weights)")
    p.add_argument("--data", default=None, help=f"dataset: {DATASETS_HELP} (default: the run's, else fashion-mnist)")
    p.add_argument("--data-dir", help="folder with the dataset files (default: the run's)")
    p.add_argument("--teacher", help=f"also report top-1 agreement and KL with this teacher ({MODEL_FORMS})")
    p.add_argument("--device", default=DEFAULT.device, help=DEVICE_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.core.inputs import InputFormat
    from fitnets.core.taps import dry_run
    from fitnets.data.loader import example, load_dataset
    from fitnets.training.config import RunConfig
    from fitnets.training.distributed import resolve_device
    from fitnets.training.evaluate import evaluate_accuracy, evaluate_agreement
    from fitnets.training.loading import ModelRef, load_data, load_model
    from fitnets.training.speed import Speed
    from fitnets.training.teacher_outputs import frozen_teacher

    device = resolve_device(args.device)
    ref = ModelRef.parse(args.model)
    model = load_model(ref, trained=True, flag="fitnets evaluate").to(device)
    inputs, logits_key, config = InputFormat(), None, RunConfig()
    if ref.run is not None:  # from a run folder: its dataset, preprocessing, input format and logits rule
        config = ref.run
        logits_key = config.logits_key
        config.data.name = args.data or config.data.name
        config.data.dir = args.data_dir or config.data.dir
        test = load_data(config, device).test
        inputs = InputFormat(channels_last=config.channels_last)
    else:
        test = load_dataset(args.data or config.data.name, "test", args.data_dir).to(device)
    with dry_run(model, example(test, 2)):   # a model that cannot take this dataset's images: one line
        model.eval()(inputs(example(test, 2)))
    result = evaluate_accuracy(model, test, inputs=inputs, logits_key=logits_key)
    line = f"{args.model}: test accuracy {result['acc']:.4f}, loss {result['loss']:.4f} ({len(test)} images)"
    if args.teacher:
        teacher = frozen_teacher(load_model(args.teacher, trained=True).to(device), Speed.of(config))
        agreement = evaluate_agreement(model, teacher, test, inputs=inputs, logits_key=logits_key)
        line += f"; with the teacher: top-1 agreement {agreement['agreement']:.4f}, KL {agreement['kl']:.4f}"
    print(line)
    return 0
