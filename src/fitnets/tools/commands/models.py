"""``fitnets models``: the registered models with their parameters, MACs and the paper's counts."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the registered models: parameters, MACs, the paper's counts")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    from fitnets.core.profile import count_macs, count_parameters
    from fitnets.models.registry import create_model, list_models, model_spec

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
