"""``fitnets layers MODEL``: every module path of a model with its type, parameters and output shape — the names
``--hint`` and ``--guided`` take."""

from __future__ import annotations

import argparse

import torch

from fitnets.errors import FitNetsError
from fitnets.tools.commands.flags import parse_shape


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="every module path of a model with its output shape")
    p.add_argument("model", help="registered model name, or package.module:factory")
    p.add_argument("--input-shape", help="C,H,W of one example (default: the model's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fitnets.models.registry import create_model, model_spec
    from fitnets.core.taps import trace

    model = create_model(args.model).eval()
    shape = parse_shape(args.input_shape) or model_spec(args.model).input_shape
    if not shape:
        raise FitNetsError(f"the input shape of {args.model} is not known: give --input-shape C,H,W")
    rows = trace(model, torch.zeros(1, *shape))
    modules = dict(model.named_modules())
    width = max(len(r[0]) for r in rows)
    print(f"{'path':<{width}}  {'type':<14} {'params':>9}  output (without batch)")
    for path, kind, out in rows:
        params = sum(p.numel() for p in modules[path].parameters())
        print(f"{path:<{width}}  {kind:<14} {params:>9,}  {out}")
    return 0
