import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch

from fitnets.data import ImageData, augment, batches, download, load_idx_dataset, locate, read_idx, split_validation, write_idx
from fitnets.errors import FitNetsError


def write_fake_dataset(folder, n_train=30, n_test=10, gz=True, names=None):
    """Four small IDX files in the real format."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for stem, array in arrays.items():
        write_idx(folder / ((names or {}).get(stem, stem) + suffix), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(path, array)
    assert np.array_equal(read_idx(path), array)


def test_corrupt_and_truncated_idx(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(FitNetsError, match="truncated or corrupt.*HINT"):
        read_idx(path, "HINT")
    path.write_bytes(b"\x12\x34garbage")
    with pytest.raises(FitNetsError, match="not an IDX file"):
        read_idx(path)
    gz = tmp_path / "y.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-4])
    with pytest.raises(FitNetsError, match="cannot read"):
        read_idx(gz)


def test_load_from_data_dir_and_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("FITNETS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arrays = write_fake_dataset(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False)
    train = load_idx_dataset("fashion-mnist", "train", tmp_path / "tv")
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.labels, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype("int64")))
    # $FITNETS_DATA is the next place looked at
    write_fake_dataset(tmp_path / "env", n_test=7)
    monkeypatch.setenv("FITNETS_DATA", str(tmp_path / "env"))
    assert len(load_idx_dataset("mnist", "test")) == 7


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FITNETS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FitNetsError, match="mnist not found.*--download"):
        locate("mnist")
    with pytest.raises(FitNetsError, match="--data-dir .*nothing does not exist"):
        locate("mnist", tmp_path / "nothing")


def test_an_explicit_data_dir_is_used_or_refused_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fake_dataset(tmp_path / "env", n_test=7)
    monkeypatch.setenv("FITNETS_DATA", str(tmp_path / "env"))   # a good copy elsewhere
    assert len(load_idx_dataset("mnist", "test")) == 7
    partial = tmp_path / "partial"
    write_fake_dataset(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()             # one file missing
    with pytest.raises(FitNetsError, match="--data-dir .*partial does not hold the four mnist files"):
        load_idx_dataset("mnist", "test", partial)


def test_corrupt_dataset_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fake_dataset(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(FitNetsError, match="cannot read .*To get good files"):
        load_idx_dataset("mnist", "test", tmp_path / "d")


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksums(tmp_path, http_server, monkeypatch):
    monkeypatch.delenv("FITNETS_DATA", raising=False)
    root, url = http_server
    write_fake_dataset(root)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in root.iterdir()}
    dest = download("mnist", tmp_path / "dl", base_urls=("http://127.0.0.1:9/", url), md5=md5)  # 1st mirror dead
    assert len(load_idx_dataset("mnist", "train", dest)) == 30
    bad = dict(md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(FitNetsError, match="checksum mismatch.*deleted"):
        download("mnist", tmp_path / "dl2", base_urls=(url,), md5=bad)
    assert not (tmp_path / "dl2" / "t10k-labels-idx1-ubyte.gz").exists()
    with pytest.raises(FitNetsError, match="cannot download"):
        download("mnist", tmp_path / "dl3", base_urls=("http://127.0.0.1:9/",), md5=md5, timeout=2)


def test_published_checksums_table():
    from fitnets.data.sources import SOURCES

    for src in SOURCES.values():
        assert len(src.md5) == 4 and all(len(v) == 32 for v in src.md5.values())


def test_split_and_batches_are_deterministic():
    data = ImageData(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).repeat(1, 1, 4, 4),
                     torch.arange(50) % 10, 10)
    train, val = split_validation(data, 10, seed=0)
    assert len(train) == 40 and len(val) == 10
    assert not set(train.labels.tolist()) - set(range(10))
    assert set(train.images[:, 0, 0, 0].tolist()).isdisjoint(val.images[:, 0, 0, 0].tolist())
    a = [idx for _, _, idx in batches(train, 16, shuffle=True, seed=3, epoch=2)]
    b = [idx for _, _, idx in batches(train, 16, shuffle=True, seed=3, epoch=2)]
    c = [idx for _, _, idx in batches(train, 16, shuffle=True, seed=3, epoch=3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert sorted(torch.cat(a).tolist()) == list(range(40))
    x, y, idx = next(batches(train, 8))
    assert x.dtype == torch.float32 and x.max() <= 1 and torch.equal(y, train.labels[idx])


def test_augment_translates_and_flips_whole_batches():
    images = torch.zeros(64, 1, 6, 6, dtype=torch.uint8)
    images[:, :, 2:4, 2:4] = 255
    gen = torch.Generator().manual_seed(0)
    out = augment(images, gen, pad=2, flip=True)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert (out.flatten(1).sum(1) == 4 * 255).all()       # a 2-pixel shift keeps the centred square whole
    assert len({tuple(o.nonzero()[0].tolist()) for o in out}) > 3  # offsets differ across the batch
    one = torch.zeros(2, 1, 3, 3, dtype=torch.uint8)
    one[:, 0, 0, 0] = 1
    flipped = augment(one, torch.Generator().manual_seed(1), flip=True)
    assert all(f[0, 0, 0] == 1 or f[0, 0, 2] == 1 for f in flipped)
