"""Image folders too large for memory: read through a DataLoader (``FolderStream``), batch for batch the same
as the in-memory form."""

import numpy as np
import pytest
import torch

from fitnets.tools.cli import main
from fitnets.data import batches, load_dataset
from fitnets.data.folder import FolderStream
from fitnets.data.loader import ImageData
from fitnets.errors import FitNetsError


def write_tree(root, n=5, size=(32, 32), classes=("ant", "bee", "cat")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("folder"))


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_in_memory_ones(tree, workers):
    memory = load_dataset("folder", "train", tree, stream=False)
    stream = load_dataset("folder", "train", tree, stream=True, workers=workers)
    assert isinstance(memory, ImageData) and isinstance(stream, FolderStream)
    assert len(stream) == len(memory) == 15 and torch.equal(stream.labels, memory.labels)
    kw = dict(shuffle=True, seed=3, epoch=1, pad=4, flip=True)
    for rank in (0, 1):
        a = list(batches(memory, 4, rank=rank, world_size=2, **kw))
        b = list(batches(stream, 4, rank=rank, world_size=2, **kw))
        assert len(a) == len(b) == 4
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    sub = stream.subset(torch.tensor([2, 7]))
    assert torch.equal(sub.head(2), memory.images[[2, 7]])


def test_auto_streams_only_what_would_not_fit(tree):
    # 15 images of 3×32×32 bytes = 46,080 bytes
    assert isinstance(load_dataset("folder", "train", tree, stream=None, memory_gb=1.0), ImageData)
    assert isinstance(load_dataset("folder", "train", tree, stream=None, memory_gb=40_000 / 2**30), FolderStream)
    with pytest.raises(FitNetsError, match="image folders only"):
        load_dataset("cifar10", "train", tree, stream=True)


def test_a_bad_image_met_by_a_worker_is_one_line(tmp_path):
    root = write_tree(tmp_path, n=2)
    (root / "train" / "bee" / "1.png").write_bytes(b"not a png")
    stream = load_dataset("folder", "train", root, stream=True, workers=1)
    with pytest.raises(FitNetsError) as err:
        list(batches(stream, 6))
    assert str(err.value).startswith("cannot read image") and "1.png" in str(err.value)
    assert "\n" not in str(err.value)


def test_images_of_another_size_need_image_size(tmp_path):
    from PIL import Image

    root = write_tree(tmp_path, n=2)
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(root / "train" / "cat" / "9.png")
    with pytest.raises(FitNetsError, match="24×20, not 32×32.*image_size"):
        list(batches(load_dataset("folder", "train", root, stream=True, workers=0), 8))
    resized = load_dataset("folder", "train", root, image_size=(16, 16), stream=True, workers=0)
    assert next(batches(resized, 8))[0].shape == (7, 3, 16, 16)


def test_training_on_a_streamed_folder(tree, tmp_path, capsys):
    args = ["train", "--model", "resnet8", "--data", "folder", "--data-dir", str(tree), "--epochs", "1",
            "--val-size", "3", "--batch-size", "4", "--out", str(tmp_path), "--no-progress",
            "--set", "model_args={num_classes: 3}", "--set", "data.stream=true", "--set", "data.workers=1"]
    assert main(args + ["--name", "streamed"]) == 0
    assert main(args + ["--name", "zca", "--set", "data.preprocess=gcn_zca"]) == 2
    assert "needs the dataset in memory" in capsys.readouterr().err
