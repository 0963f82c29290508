#!/bin/sh
# CNN ↔ ViT on Fashion-MNIST with FitNets: a CNN teacher → a ViT student, and a ViT teacher → a CNN student, each
# student trained by backprop, KD and FitNets (hints, then KD), 3 seeds each, on the same data and schedule.
#   CNN teacher: paper-mnist-teacher (shipped, maxout, 419K parameters); ViT student: vit-fmnist (206K).
#   ViT teacher: vit-fmnist trained here first; CNN student: paper-mnist-fitnet (36K).
# The ViT's tokens (class token left out, 7×7 patches) are joined to the CNN's 4×4 maps by resampling (see
# `--dry-run`). A short protocol sized for a 2-core CPU (docs/results.md has the timing):
#   sh benchmarks/any_pair.sh            (OUT=runs/any-pair by default)
set -e
OUT=${OUT:-runs/any-pair}
RUN="--train-size 5000 --epochs 5 --hint-epochs 2 --lr 0.002 --set hint_stage.optim.lr=0.002 --seeds 0,1,2 --no-progress --out $OUT"
fitnets train --student vit-fmnist --train-size 10000 --epochs 8 --lr 0.002 --name vit-teacher --out "$OUT" --no-progress
for method in ce kd fitnet; do
    fitnets distill --method $method --teacher paper-mnist-teacher --student vit-fmnist --name "cnn2vit-$method" $RUN
    fitnets distill --method $method --teacher "vit-fmnist:$OUT/vit-teacher" --student paper-mnist-fitnet \
        --name "vit2cnn-$method" $RUN
done
fitnets evaluate "$OUT/vit-teacher"
fitnets report "$OUT"/cnn2vit-* --out "$OUT/report-cnn2vit" --no-figures
fitnets report "$OUT"/vit2cnn-* --out "$OUT/report-vit2cnn" --no-figures
