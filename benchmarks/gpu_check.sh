#!/bin/sh
# The prepared GPU check, for a session that is lent a GPU machine: the CUDA-path tests, then `fitnets bench
# step` and `fitnets bench speed` on the card. Needs only the machine's own python3 with PyTorch, pytest, tqdm,
# PyYAML, safetensors and Pillow (the GPU image has them); writes each output under $OUT (or runs/gpu-check).
#   device run: sh benchmarks/gpu_check.sh          (about 6 minutes on an H100)
set -u
out=${OUT:-runs/gpu-check}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_fold.py tests/test_folder_stream.py 2>&1 \
    | tee "$out/cuda-tests.txt"
python3 -m fitnets bench step --device cuda --teacher resnet56 --student resnet20 --batch-size 64 \
    --input-shape 3,32,32 --num-classes 100 --rounds 2 2>&1 | grep -v Warning | tee "$out/bench-step-resnet.txt"
python3 -m fitnets bench step --device cuda --rounds 2 2>&1 | grep -v Warning | tee "$out/bench-step-mnist.txt"
python3 -m fitnets bench speed --device cuda 2>&1 | tee "$out/bench-speed.txt"
