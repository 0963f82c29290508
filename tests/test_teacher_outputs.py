import pytest
import torch

from fitnets.core.teacher import FrozenTeacher
from fitnets.data import ImageData
from fitnets.data.loader import Augmentation
from fitnets.training.config import load_config
from fitnets.training.teacher_outputs import (CachedOutputs, LiveOutputs, StoredOutputs, cache_blocker,
                                              teacher_source)


def data(n=50):
    return ImageData(torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8), torch.zeros(n, dtype=torch.long), 10)


def teacher(x):
    return x.flatten(1)[:, :3] * 2 + 1


def test_cache_returns_each_examples_output():
    d = data()
    cache = CachedOutputs(teacher, d, batch_size=7, progress=False)
    cache.prepare()
    index = torch.tensor([3, 0, 49])
    x = d.images[index].float() / 255
    assert torch.allclose(cache(x, index), teacher(x))


def test_bf16_cache_and_memory_mapped_spill(tmp_path):
    d = data()
    cache = CachedOutputs(teacher, d, batch_size=16, progress=False, dtype=torch.bfloat16, spill_dir=tmp_path,
                          spill_bytes=10)
    cache.prepare()
    assert cache.values.dtype == torch.bfloat16
    spilled = list(tmp_path.iterdir())
    assert len(spilled) == 1 and spilled[0].stat().st_size == 50 * 3 * 2   # on disk, not in RAM
    index = torch.arange(50)
    x = d.images.float() / 255
    assert torch.allclose(cache(x, index), teacher(x), rtol=1e-2)
    assert cache(x, index).dtype == torch.float32


def test_blocker_explains_why():
    assert cache_blocker(Augmentation()) is None
    assert "random augmentation (pad=2, flip=True)" in cache_blocker(Augmentation(2, True))


def test_cache_is_built_once_at_prepare_and_never_before():
    d, calls = data(), []

    def counting(x):
        calls.append(len(x))
        return teacher(x)

    cache = CachedOutputs(counting, d, batch_size=20, progress=False)
    assert calls == []                      # nothing is computed when a stage is described
    with pytest.raises(RuntimeError, match="prepare"):
        cache(d.images[:2].float() / 255, torch.arange(2))
    cache.prepare()
    cache.prepare()
    assert calls == [20, 20, 10]            # one pass over the data, however often prepare is called


def test_one_choice_of_source_store_cache_or_live(tmp_path):
    d = data()
    frozen = FrozenTeacher(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)))

    def source(kind, *overrides):
        config = load_config(None, [("store.dir", str(tmp_path)), *overrides])
        return teacher_source(teacher, kind, d, config, frozen, progress=False)

    assert isinstance(source("logits"), CachedOutputs)                       # no augmentation: once per example
    assert isinstance(source("hints"), CachedOutputs)
    assert isinstance(source("logits", ("teacher_cache", False)), LiveOutputs)
    augmented = [("data.pad", 1), ("data.flip", True)]
    assert isinstance(source("logits", *augmented), StoredOutputs)            # logits under augmentation: stored
    live = source("hints", *augmented)                                         # hints are never stored
    assert isinstance(live, LiveOutputs)
    assert isinstance(source("logits", *augmented, ("store.enabled", False)), LiveOutputs)
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(live(x, torch.arange(3)), teacher(x))   # live: computed from the batch, not the key
