import torch

from fitnets.training.cache import TeacherCache, cache_blocker
from fitnets.data import ImageData


def data(n=50):
    return ImageData(torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8), torch.zeros(n, dtype=torch.long), 10)


def teacher(x):
    return x.flatten(1)[:, :3] * 2 + 1


def test_cache_returns_each_examples_output():
    d = data()
    cache = TeacherCache.build(teacher, d, batch_size=7, progress=False)
    index = torch.tensor([3, 0, 49])
    x = d.images[index].float() / 255
    assert torch.allclose(cache(x, index), teacher(x))


def test_bf16_cache_and_memory_mapped_spill(tmp_path):
    d = data()
    cache = TeacherCache.build(teacher, d, batch_size=16, progress=False, dtype=torch.bfloat16, spill_dir=tmp_path,
                               spill_bytes=10)
    assert cache.values.dtype == torch.bfloat16
    spilled = list(tmp_path.iterdir())
    assert len(spilled) == 1 and spilled[0].stat().st_size == 50 * 3 * 2   # on disk, not in RAM
    index = torch.arange(50)
    x = d.images.float() / 255
    assert torch.allclose(cache(x, index), teacher(x), rtol=1e-2)
    assert cache(x, index).dtype == torch.float32


def test_blocker_explains_why():
    assert cache_blocker(0, False) is None
    assert "random augmentation" in cache_blocker(2, True)
