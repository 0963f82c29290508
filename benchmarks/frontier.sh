#!/bin/sh
# Which student? The frontier on Fashion-MNIST with the paper's MNIST teacher (shipped weights): 10 students
# spanning 250× in MACs (the depth-study students, the paper's MNIST FitNet, CIFAR ResNets at 1×28×28, a width
# grid of one factory), trained by FitNets, KD and backprop; a first pass of one seed everywhere, then 3 seeds
# at every point of each method's frontier; a 30-step KD screen of every candidate (its Kendall τ is reported,
# no candidate is dropped by it). Then the teacher's cost: six of the same trials as a family sharing the
# teacher-output store, one by one with the engine's defaults (a teacher cache per run), and one by one with
# the teacher live.
#   sh benchmarks/frontier.sh [OUT]      (OUT default runs/frontier-evidence; docs/results.md gives the time)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-runs/frontier-evidence}
FITNETS=${FITNETS:-.venv/bin/fitnets}
DATA="--data fashion-mnist --data-dir ${DATA_DIR:-/usr/share/datasets/fashion-mnist} --train-size 5000 --val-size 2000
      --set data.test_size=5000"
PROTOCOL="--epochs 4 --hint-epochs 2 --optimizer adam --lr 0.002 --set optim.schedule=cosine
          --set hint_stage.optim.schedule=cosine --no-progress"
STUDENTS="fmnist-depth5 fmnist-depth7 fmnist-depth9 fmnist-depth11 paper-mnist-fitnet
          resnet8 in_channels=1 resnet14 in_channels=1
          fitnets.models.depth_study:ThinDeepNet depth=5 width=2,4,8 in_channels=1 input_size=28 fc_units=100"
mkdir -p "$OUT"
# shellcheck disable=SC2086
FITNETS_CACHE="$OUT/cache-frontier" $FITNETS frontier --teacher paper-mnist-teacher $STUDENTS \
  --methods fitnet,kd,ce --seeds 1 --frontier-seeds 3 --screen 30 --pick-speedup 3 --bench-repeats 20 $DATA $PROTOCOL \
  --out "$OUT" --name frontier
# The teacher's cost, the same six trials three ways (each its own empty store folder).
SIX="fmnist-depth5 paper-mnist-fitnet resnet8 in_channels=1"
for way in family:"" one-by-one-cached:"--set store.enabled=false" \
           one-by-one-live:"--set store.enabled=false --set teacher_cache=false"; do
  name=${way%%:*}
  start=$(date +%s)
  # shellcheck disable=SC2086
  FITNETS_CACHE="$OUT/cache-$name" $FITNETS frontier --teacher paper-mnist-teacher $SIX --methods fitnet,kd \
    $DATA $PROTOCOL ${way#*:} --bench-repeats 3 --out "$OUT" --name "cost-$name" --no-figure > "$OUT/cost-$name.txt"
  echo "$name: $(( $(date +%s) - start )) s wall-clock" | tee -a "$OUT/cost-wallclock.txt"
done
