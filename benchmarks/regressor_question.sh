#!/bin/sh
# Does FitNets' regressor learn anything from a random student? (docs/results.md, "The regressor question")
# Stage 1 three ways, on the two pairs and the protocol of two_vs_one_stage.sh (Fashion-MNIST, 10,000 training
# images, 10 epochs, FitNets 3 hint epochs + 10), seeds 0-2:
#   paper                the paper's joint stage 1 (Algorithm 1): the student's lower layers and the regressor together
#   regressor-first-1    the regressor alone against the frozen student for 1 hint epoch, then both for 2
#   regressor-only       the regressor alone for all 3 hint epochs: fitted to a random student, which never learns the hint
#   kd                   no hint stage: KD alone
#   ce                   standard backprop (an end of the scale: a student trained without the teacher)
# Every FitNets run logs, per hint epoch on 1,000 validation images, the hint fit (R²), a closed-form linear probe
# of the labels on the guided features and their linear CKA with the hint; the regressor-only runs' first hint
# epoch measures the untrained student (its weights as the seed made them, its batch-norm statistics from the
# data); `fitnets diagnose` measures the kd and ce students.
#   sh benchmarks/regressor_question.sh          (OUT=runs/regressor-question, JOBS=2 runs at a time, 1 thread each)
set -e
OUT=${OUT:-runs/regressor-question}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUN="--train-size 10000 --epochs 10 --hint-epochs 3 --no-progress --out $OUT"
ZOO="--set model_args.in_channels=1 --set model_args.num_classes=10"
DIAG="--hint-diagnostics 1000"

if [ "$1" = one ]; then  # one run: train it (or finish it after an interruption), then measure what the table needs
    name=$2; shift 2
    case $name in
        mnist-pair-*) pair="--teacher paper-mnist-teacher --student paper-mnist-fitnet" ;;
        resnet-pair-*) pair="--teacher resnet56:$OUT/resnet56-teacher --student resnet20 $ZOO --input-shape 1,28,28
                             --set teacher_args.in_channels=1 --set teacher_args.num_classes=10" ;;
        resnet56-teacher)
            [ -f "$OUT/$name/results.json" ] || fitnets train --student resnet56 $ZOO --train-size 10000 --epochs 15 \
                --name "$name" --out "$OUT" --no-progress
            exit 0 ;;
    esac
    dir="$OUT/$name"
    if [ ! -f "$dir/results.json" ]; then
        resume=""
        [ -f "$dir/last.safetensors" ] && resume="--resume $dir"
        fitnets distill $pair $RUN "$@" --name "$name" $resume
    fi
    case $name in
        *-kd-*|*-ce-*) fitnets diagnose "$dir" --json > "$dir/diagnose.json" ;;
    esac
    exit 0
fi

runs() {  # one line per run of pair $1: its name, then its flags
    for seed in $SEEDS; do
        echo "$1-paper-seed$seed --method fitnet $DIAG --seed $seed"
        echo "$1-regressor-first-1-seed$seed --method fitnet --regressor-first 1 $DIAG --seed $seed"
        echo "$1-regressor-only-seed$seed --method fitnet --regressor-first 3 $DIAG --seed $seed"
        echo "$1-kd-seed$seed --method kd --seed $seed"
        echo "$1-ce-seed$seed --method ce --seed $seed"
    done
}
mkdir -p "$OUT"
# the resnet pair's teacher trains beside the MNIST pair's runs; then the resnet pair's runs
{ echo resnet56-teacher; runs mnist-pair; } | xargs -P "$JOBS" -L 1 sh "$0" one
runs resnet-pair | xargs -P "$JOBS" -L 1 sh "$0" one
python "$(dirname "$0")/regressor_question.py" "$OUT" | tee "$OUT/table.md"
