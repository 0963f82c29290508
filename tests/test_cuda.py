"""The CUDA path: run where a GPU is present (`sh benchmarks/gpu_check.sh` on a GPU machine); skipped elsewhere.

Synthetic data only, so that the tests need no dataset files on the GPU machine.
"""

import json

import pytest
import torch

from fitnets import FrozenTeacher, create_model
from fitnets.training.teacher_outputs import CachedOutputs
from fitnets.training.config import load_config
from fitnets.data import batches
from fitnets.data.loader import ImageData
from fitnets.training.loading import Data
from fitnets.training.run import Run

from test_fold import trained_like  # a model whose batch norms hold real statistics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def synthetic(n, shape=(1, 28, 28), classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                     torch.randint(0, classes, (n,), generator=g), classes)


@pytest.mark.parametrize("options", [{}, {"channels_last": True, "fold_bn": True},
                                     {"channels_last": True, "fold_bn": True, "dtype": torch.bfloat16}])
def test_teacher_options_on_cuda_give_the_cpu_logits(options):
    model = trained_like("resnet20", num_classes=10)
    x = torch.randn(32, 3, 32, 32)
    reference = FrozenTeacher(model)(x)
    got = FrozenTeacher(model.cuda(), **options)(x.cuda()).cpu()
    bound = 0.05 if options.get("dtype") else 0.01  # TF32 convolutions; bf16
    assert ((got - reference).abs().max() / reference.abs().max()).item() < bound
    hint = FrozenTeacher(model.cuda(), **options).features(x.cuda(), ["layer2.0.conv1"])[0].cpu()
    expected = FrozenTeacher(model.cpu()).features(x, ["layer2.0.conv1"])[0]
    assert ((hint - expected).abs().max() / expected.abs().max()).item() < bound


def test_cache_and_batches_stay_on_the_gpu():
    data = synthetic(300).to("cuda")
    teacher = FrozenTeacher(create_model("paper-mnist-teacher", pretrained=True).cuda(), channels_last=True)
    cache = CachedOutputs(teacher, data, 128, progress=False, dtype=torch.bfloat16)
    cache.prepare()
    for x, y, index in batches(data, 64, shuffle=True):  # cached outputs: no augmentation
        assert x.is_cuda and y.is_cuda and index.is_cuda
        assert cache(x, index).is_cuda


@pytest.mark.parametrize("options", [[], [("student_dtype", "bfloat16"), ("teacher_dtype", "bfloat16"),
                                          ("channels_last", True), ("data.pad", 2)]])
def test_fitnet_run_on_cuda(tmp_path, options):
    config = load_config(None, [("method", "fitnet"), ("device", "cuda"), ("epochs", 2), ("hint_stage.epochs", 1),
                                ("data.batch_size", 64), ("out", str(tmp_path)), ("name", "run"), *options])
    data = Data(*(synthetic(n, seed=i).to("cuda") for i, n in enumerate((512, 128, 128))))
    Run(config, progress=False).execute(data=data)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["hint", "main", "main"]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stages"]["hint"]["best_epoch"] == 1 and torch.isfinite(torch.tensor(results["teacher_kl"]))
    assert rows[-1]["loss"] < rows[1]["loss"]  # stage 2 learns on the device


def test_streamed_folder_batches_on_cuda_equal_the_in_memory_ones(tmp_path):
    pytest.importorskip("PIL")
    from test_folder_stream import write_tree

    from fitnets.data import load_dataset

    root = write_tree(tmp_path, n=4)
    memory = load_dataset("folder", "train", root, stream=False).to("cuda")
    stream = load_dataset("folder", "train", root, stream=True, workers=2).to("cuda")
    for (xa, ya, ia), (xb, yb, ib) in zip(batches(memory, 5, shuffle=True, pad=4, flip=True),
                                          batches(stream, 5, shuffle=True, pad=4, flip=True)):
        assert xb.is_cuda and torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
