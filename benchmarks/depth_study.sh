#!/bin/sh
# The depth study (FitNets §4.4, Figure 2) on Fashion-MNIST: 5/7/9/11-layer students at a 5M-multiplication
# budget, each trained by backprop, KD and FitNets, 3 seeds; then the report (table + figures).
#   sh benchmarks/depth_study.sh            (44 minutes on 2 CPU cores, sharing them with another job)
set -eu
cd "$(dirname "$0")/.."
FITNETS=${FITNETS:-.venv/bin/fitnets}
for depth in 5 7 9 11; do
  for method in ce kd fitnet; do
    $FITNETS run "configs/depth-study/fmnist-depth$depth-$method.yaml" --seeds 3 --no-progress
  done
done
$FITNETS report runs/depth-study/* --out runs/depth-study-report --no-speed
