"""Where a teacher's forward spends its time: the time to reach each layer (a forward cut there, as stage 1
runs it) and the whole forward, for each FrozenTeacher option. The README's "where the time goes" figures.

    python benchmarks/teacher_stages.py                         # resnet56, batch 64, 3×32×32
    python benchmarks/teacher_stages.py --model resnet110 --layers layer1,layer2,layer3
"""

from __future__ import annotations

import argparse
import copy

import torch

from fitnets import FrozenTeacher, create_model
from fitnets.core.timing import median_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--layers", default="conv1,layer1,layer2,layer3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--input-shape", default="3,32,32")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.num_classes)
    x = torch.randn(args.batch_size, *map(int, args.input_shape.split(",")))
    layers = args.layers.split(",")
    options = {"fp32, contiguous": {}, "channels_last": {"channels_last": True},
               "channels_last + folded BN": {"channels_last": True, "fold_bn": True},
               "channels_last + folded BN + bf16": {"channels_last": True, "fold_bn": True, "dtype": torch.bfloat16}}
    print(f"{args.model}, batch {args.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}: "
          "ms to reach each layer (median)")
    print("| options | " + " | ".join(layers) + " | whole forward |\n|---|" + "---:|" * (len(layers) + 1))
    for label, kw in options.items():
        teacher = FrozenTeacher(copy.deepcopy(model), **kw)
        cells = [median_seconds(lambda p=p: teacher.features(x, [p]), args.repeats, warmup=4) for p in layers]
        cells.append(median_seconds(lambda: teacher(x), args.repeats, warmup=4))
        print(f"| {label} | " + " | ".join(f"{1000 * c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
