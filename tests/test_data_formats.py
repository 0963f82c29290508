"""CIFAR pickles, SVHN .mat files, image folders and the paper's preprocessing, on small files written by the
tests in the real formats."""

import pickle

import numpy as np
import pytest
import torch

from fitnets.data import Preprocess, ZCA, global_contrast_normalize, load_dataset
from fitnets.data.cifar import write_batch
from fitnets.errors import FitNetsError

rng = np.random.default_rng(0)


def cifar10_tree(root, n=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (6 * n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * n)
    for i in range(5):
        write_batch(folder / f"data_batch_{i + 1}", images[i * n:(i + 1) * n], labels[i * n:(i + 1) * n])
    write_batch(folder / "test_batch", images[5 * n:], labels[5 * n:])
    return images, labels


def test_cifar10(tmp_path):
    images, labels = cifar10_tree(tmp_path)
    train = load_dataset("cifar10", "train", tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    assert train.images.shape == (30, 3, 32, 32) and train.num_classes == 10
    assert torch.equal(train.images, torch.from_numpy(images[:30]))
    assert torch.equal(test.labels, torch.from_numpy(labels[30:]))


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        write_batch(folder / split, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 100, n),
                    label_key="fine_labels")
    data = load_dataset("cifar100", "train", tmp_path)
    assert len(data) == 8 and data.num_classes == 100


def test_cifar_refuses_code_in_pickles_and_corrupt_files(tmp_path):
    cifar10_tree(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(FitNetsError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02}q")
    with pytest.raises(FitNetsError, match="cannot read CIFAR batch"):
        load_dataset("cifar10", "test", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FitNetsError, match="cifar100 not found.*kriz/cifar"):
        load_dataset("cifar100", "test", tmp_path / "empty")
    with pytest.raises(FitNetsError, match="--data-dir .*nothing does not exist"):
        load_dataset("cifar100", "test", tmp_path / "nothing")


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)})
    savemat(tmp_path / "extra_32x32.mat", {"X": x[..., :2], "y": np.array([[3], [4]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x[..., :3], "y": np.array([[1], [2], [3]], dtype=np.uint8)})
    train = load_dataset("svhn", "train", tmp_path)
    assert train.labels.tolist() == [0, 1, 2, 0, 9, 3, 4]       # label 10 is digit 0; extra is appended
    assert torch.equal(train.images[1], torch.from_numpy(x[..., 1].transpose(2, 0, 1)))
    assert len(load_dataset("svhn", "test", tmp_path)) == 3
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(FitNetsError, match="cannot read"):
        load_dataset("svhn", "test", tmp_path)


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog", "emu")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((10, 12, 3), 40 * c + i, dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    train = load_dataset("folder", "train", tmp_path)
    assert train.images.shape == (6, 3, 10, 12) and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.images[3, 0, 0, 0] == 41
    test = load_dataset("folder", "test", tmp_path, image_size=(8, 8))   # val/ stands in for test/
    assert test.images.shape == (6, 3, 8, 8)
    with pytest.raises(FitNetsError, match="needs --data-dir"):
        load_dataset("folder", "train")
    with pytest.raises(FitNetsError, match="unknown dataset 'cifar1000'.*cifar100"):
        load_dataset("cifar1000", "train")


def test_gcn_and_zca():
    images = torch.from_numpy(rng.integers(0, 256, (400, 3, 4, 4), dtype=np.uint8))
    gcn = global_contrast_normalize(images)
    flat = gcn.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(400), atol=1e-4)
    assert torch.allclose(flat.norm(dim=1), torch.full((400,), 55.0), rtol=1e-4)
    zca = ZCA(bias=1e-6).fit(gcn)
    white = zca(gcn).flatten(1).double()
    cov = white.T @ white / len(white)
    # GCN removes one direction (each image's mean), so one eigenvalue is 0; the rest are whitened to 1.
    eig = torch.linalg.eigvalsh(cov)
    assert torch.allclose(eig[1:], torch.ones(47, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(cov, cov.T, atol=1e-8)


def test_preprocess_fits_on_train_only():
    train = torch.from_numpy(rng.integers(0, 128, (50, 3, 4, 4), dtype=np.uint8))
    test = torch.from_numpy(rng.integers(128, 256, (10, 3, 4, 4), dtype=np.uint8))
    prep = Preprocess("standardize").fit(train)
    assert prep(train).mean().abs() < 1e-5 and prep(test).mean() > 1.0
    assert prep(train).dtype == torch.float32
    with pytest.raises(FitNetsError):
        Preprocess("whiten-ish")
