"""``fitnets export MODEL --out DIR``: the trained student alone, as safetensors + JSON, and ONNX."""

from __future__ import annotations

import argparse

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import MODEL_FORMS


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write the trained student alone: safetensors + JSON, and ONNX")
    p.add_argument("model", help=f"trained weights: {MODEL_FORMS} (NAME alone: its shipped weights)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.tools.export import export_student
    from fitnets.training.loading import ModelRef, input_shape, load_model
    from fitnets.training.record import eval_view

    ref = ModelRef.parse(args.model)
    model, name, model_args = load_model(ref, trained=True, flag="fitnets export"), ref.name, ref.model_args
    try:
        shape = input_shape(ref.run) if ref.run is not None else None
    except FitNetsError:
        raise FitNetsError(f"{args.model} does not record the input shape it fed (a run made before runs recorded "
                           "it): add input_shape: [C, H, W] to its config.yaml") from None
    info = export_student(model, name, args.out, model_args, onnx=not args.no_onnx,
                          logits_key=ref.run.logits_key if ref.run is not None else None, input_shape=shape,
                          eval_view=eval_view(ref.run, shape) if ref.run is not None and shape is not None else None)
    parity = (f"; ONNX Runtime vs PyTorch max abs diff {info['onnx_max_abs_diff']:.2e}"
              if "onnx_max_abs_diff" in info else "")
    files = ", ".join(info[k] for k in ("weights", "onnx") if k in info)
    print(f"exported {name} ({info['parameters']:,} parameters) to {args.out}: {files}, model.json{parity}")
    return 0
