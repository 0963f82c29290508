"""``fitnets layers MODEL``: every module path of a model with its type, parameters and output shape — the names
``--hint`` and ``--guided`` take."""

from __future__ import annotations

import argparse

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import MODEL_FORMS, model_input_shape


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="every module path of a model with its output shape")
    p.add_argument("model", help=f"{MODEL_FORMS}; weights are not needed")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the run folder's, else the model's)")
    p.add_argument("--depth", type=int, metavar="N", help="only modules at most N levels down (layer2.1 is 2): "
                                                          "readable for models of hundreds of layers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.core.taps import trace
    from fitnets.training.loading import ModelRef, load_model

    ref = ModelRef.parse(args.model)
    model = load_model(ref).eval()
    shape = model_input_shape(ref, args.input_shape)
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
