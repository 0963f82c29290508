#!/bin/sh
# Two-stage FitNets (the paper, Algorithm 1) next to the one-stage forms later toolkits publish as "FitNet", on one
# engine, the same data, schedule and budget; Fashion-MNIST, 3 seeds each:
#   ce                  standard backprop
#   kd                  Hinton's KD (λ 4 → 1, τ = 3, as in the paper's stage 2)
#   fitnet              the paper: hint stage, then KD
#   fitnet-onestage     cross-entropy + 100 × hint MSE, no KD (the benchmark form)
#   fitnet-onestage-kd  cross-entropy + 100 × hint MSE + KD
# for the paper's MNIST pair (shipped maxout teacher → 36K FitNet) and a zoo pair made for 1-channel 28×28
# images (resnet56 → resnet20, the teacher trained here first). Sized for about 2 hours on 2 CPU cores: 10,000
# training images, 10 epochs (FitNets: 3 hint epochs + 10).
#   sh benchmarks/two_vs_one_stage.sh            (OUT=runs/two-vs-one by default)
set -e
OUT=${OUT:-runs/two-vs-one}
RUN="--train-size 10000 --epochs 10 --hint-epochs 3 --seeds 0,1,2 --no-progress --out $OUT"
ZOO="--set model_args.in_channels=1 --set model_args.num_classes=10"
fitnets train --student resnet56 $ZOO --train-size 10000 --epochs 15 --name resnet56-teacher --out "$OUT" --no-progress
for method in ce kd fitnet fitnet-onestage fitnet-onestage-kd; do
    fitnets distill --method $method --teacher paper-mnist-teacher --student paper-mnist-fitnet \
        --name "mnist-pair-$method" $RUN
    fitnets distill --method $method --teacher "resnet56:$OUT/resnet56-teacher" --student resnet20 $ZOO \
        --set teacher_args.in_channels=1 --set teacher_args.num_classes=10 --input-shape 1,28,28 \
        --name "resnet-pair-$method" $RUN
done
fitnets report "$OUT"/mnist-pair-* --out "$OUT/report-mnist-pair" --no-figures
fitnets report "$OUT"/resnet-pair-* --out "$OUT/report-resnet-pair" --no-figures
