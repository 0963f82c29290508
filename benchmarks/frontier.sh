#!/bin/sh
# Which student? The frontier on Fashion-MNIST with the paper's MNIST teacher (shipped weights): 10 students
# spanning 250× in MACs (the depth-study students, the paper's MNIST FitNet, CIFAR ResNets at 1×28×28, a width
# grid of one factory), trained by FitNets, KD and backprop; a first pass of one seed everywhere, then 3 seeds
# at every point of each method's frontier; a 30-step KD screen of every candidate (its Kendall τ is reported;
# no candidate is dropped by it). Then the teacher's cost: four trials (2 students × FitNets, KD) as a family
# sharing the teacher-output store, one by one with the engine's defaults (a teacher cache per run), and one
# by one with the teacher live — a shorter protocol of its own.
#   sh benchmarks/frontier.sh [OUT [main|cost|all]]     (OUT default runs/frontier-evidence)
# Running it again continues where it stopped (finished trials are read, not trained again).
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-runs/frontier-evidence}
PART=${2:-all}
FITNETS=${FITNETS:-.venv/bin/fitnets}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
ADAM="--optimizer adam --lr 0.002 --set optim.schedule=cosine --set hint_stage.optim.schedule=cosine --no-progress"
mkdir -p "$OUT"
if [ "$PART" != cost ]; then
  # shellcheck disable=SC2086
  FITNETS_CACHE="$OUT/cache-frontier" $FITNETS frontier --teacher paper-mnist-teacher \
    fmnist-depth5 fmnist-depth7 fmnist-depth9 fmnist-depth11 paper-mnist-fitnet \
    resnet8 in_channels=1 resnet14 in_channels=1 \
    fitnets.models.depth_study:ThinDeepNet depth=5 width=2,4,8 in_channels=1 input_size=28 fc_units=100 \
    --methods fitnet,kd,ce --seeds 1 --frontier-seeds 3 --screen 30 --pick-speedup 3 --bench-repeats 20 --jobs 2 \
    --data fashion-mnist --data-dir "$DATA_DIR" --train-size 5000 --val-size 2000 --set data.test_size=5000 \
    --epochs 4 --hint-epochs 2 $ADAM --out "$OUT" --name frontier
fi
if [ "$PART" != main ]; then
  for way in family:"" one-by-one-cached:"--set store.enabled=false" \
             one-by-one-live:"--set store.enabled=false --set teacher_cache=false"; do
    name=${way%%:*}
    start=$(date +%s)
    # shellcheck disable=SC2086
    FITNETS_CACHE="$OUT/cache-$name" $FITNETS frontier --teacher paper-mnist-teacher fmnist-depth5 \
      paper-mnist-fitnet --methods fitnet,kd --data fashion-mnist --data-dir "$DATA_DIR" --train-size 2000 \
      --val-size 1000 --set data.test_size=2000 --epochs 3 --hint-epochs 1 $ADAM ${way#*:} --bench-repeats 3 \
      --out "$OUT" --name "cost-$name" --no-figure > "$OUT/cost-$name.txt"
    echo "$name: $(( $(date +%s) - start )) s wall-clock" | tee -a "$OUT/cost-wallclock.txt"
  done
fi
