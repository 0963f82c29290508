"""Where dataset files are found, and how they are fetched when the machine is online.

Search order (first folder holding all four files wins): ``data_dir`` (``--data-dir``), ``$FITNETS_DATA``,
``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` package), then the download cache.
Inside each folder the files may sit directly, under ``<name>/``, or in torchvision's ``<Class>/raw/`` layout,
gzipped or not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fitnets.errors import FitNetsError

log = logging.getLogger(__name__)

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSource:
    """An IDX dataset: where it is published and the MD5 of each published ``.gz`` file."""

    name: str
    torchvision_folder: str
    urls: tuple[str, ...]
    md5: dict[str, str]
    how_to_get: str


SOURCES = {
    # Checksums as published in the Fashion-MNIST README (github.com/zalandoresearch/fashion-mnist).
    "fashion-mnist": IdxSource(
        "fashion-mnist", "FashionMNIST",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "on Debian run `apt-get install -y dataset-fashion-mnist`, or pass --download, or put the four "
        "IDX files in --data-dir",
    ),
    # Checksums of the original MNIST files (as listed by torchvision's MNIST dataset).
    "mnist": IdxSource(
        "mnist", "MNIST",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "pass --download, or put the four IDX files (from http://yann.lecun.com/exdb/mnist/) in --data-dir",
    ),
}


def source(name: str) -> IdxSource:
    if name not in SOURCES:
        raise FitNetsError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def cache_dir(name: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "fitnets" / name


def _find_file(folder: Path, stem: str) -> Path | None:
    # torchvision's layout keeps raw files; some mirrors write "train-images.idx3-ubyte" with a dot.
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def search_roots(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where any dataset is looked for: ``data_dir`` alone when it is given (a folder the user names is used or
    refused, never silently replaced by another copy); else ``$FITNETS_DATA``, ``/usr/share/datasets/<name>``.

    Raises:
        FitNetsError: ``data_dir`` does not exist.
    """
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FitNetsError(f"--data-dir {data_dir} does not exist (or is not a folder)")
        return [Path(data_dir)]
    roots = [Path(os.environ["FITNETS_DATA"])] if os.environ.get("FITNETS_DATA") else []
    return roots + [Path("/usr/share/datasets") / name]


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders that may hold an IDX dataset: each search root (then the download cache), directly, under
    ``<name>/``, or in torchvision's ``<Class>/raw/`` layout."""
    src = source(name)
    roots = search_roots(name, data_dir) + ([cache_dir(name)] if data_dir is None else [])
    dirs = []
    for root in roots:
        dirs += [root, root / name, root / src.torchvision_folder / "raw"]
    return dirs


def locate(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The four files of ``name`` (keys are the stems of ``SPLIT_FILES``) in the first folder that has all."""
    for folder in candidate_dirs(name, data_dir):
        found = {stem: _find_file(folder, stem) for pair in SPLIT_FILES.values() for stem in pair}
        if all(found.values()):
            return found  # type: ignore[return-value]
    looked = ", ".join(str(d) for d in candidate_dirs(name, data_dir)[::3])
    where = (f"--data-dir {data_dir} does not hold the four {name} files" if data_dir is not None
             else f"{name} not found")
    raise FitNetsError(f"{where} (looked in {looked}); {source(name).how_to_get}")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, dest: str | os.PathLike | None = None, base_urls: tuple[str, ...] | None = None,
             md5: dict[str, str] | None = None, timeout: float = 60.0) -> Path:
    """Fetch the published ``.gz`` files of ``name`` into ``dest`` (default: the cache folder) and check each
    against its published MD5. Files already present with the right checksum are kept.

    Args:
        base_urls: mirrors to try in order (default: the official ones).
        md5: expected checksums by file name (default: the published ones).

    Raises:
        FitNetsError: no mirror answered, or a file's checksum is wrong (the bad file is deleted).
    """
    src = source(name)
    dest = Path(dest) if dest else cache_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    for filename, expected in (md5 or src.md5).items():
        target = dest / filename
        if target.is_file() and _md5(target) == expected:
            continue
        errors = []
        for base in base_urls or src.urls:
            url = base.rstrip("/") + "/" + filename
            tmp = target.with_name(filename + ".part")
            try:
                log.info("downloading %s", url)
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    while block := response.read(1 << 20):
                        out.write(block)
            except OSError as err:
                errors.append(f"{url}: {err}")
                tmp.unlink(missing_ok=True)
                continue
            got = _md5(tmp)
            if got != expected:
                tmp.unlink(missing_ok=True)
                raise FitNetsError(f"checksum mismatch for {url}: got md5 {got}, expected {expected}; "
                                   "the file was deleted, try again or use another mirror")
            os.replace(tmp, target)
            break
        else:
            raise FitNetsError(f"cannot download {name} ({'; '.join(errors)}); {src.how_to_get}")
    return dest
