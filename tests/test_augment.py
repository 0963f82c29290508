"""The augmentation presets: random-resized-crop (batched, and item by item) with its centre-crop evaluation view,
and mean/std normalisation — through the config, on in-memory data."""

import pytest
import torch

from fitnets.data.augment import CentreCrop, ResizedCrop
from fitnets.data.images import ImageData
from fitnets.data.loader import batches
from fitnets.training.config import load_config
from fitnets.training.loading import _finish


def images(n=6, c=3, h=8, w=8):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_a_whole_image_crop_is_the_image_and_a_flip_mirrors_it():
    x = images()
    whole = ResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(whole.apply(x, whole.draw(6, torch.Generator())), x.float() / 255, atol=1e-6)
    params = whole.draw(6, torch.Generator())
    params[:, 4] = -1   # the flip sign
    assert torch.allclose(whole.apply(x, params), x.float().flip(-1) / 255, atol=1e-6)
    assert torch.allclose(CentreCrop(crop=1.0)(x), x.float() / 255, atol=1e-6)


def test_crops_cover_the_asked_area_and_resize_to_the_asked_size():
    crop = ResizedCrop((5, 7), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    params = crop.draw(1000, torch.Generator().manual_seed(1))
    w, h, cx, cy, sign = params.unbind(1)
    assert torch.allclose(w * h, torch.full_like(w, 0.25)) and torch.allclose(w, torch.full_like(w, 0.5))
    assert bool(((cx.abs() + w) <= 1 + 1e-6).all() and ((cy.abs() + h) <= 1 + 1e-6).all())   # inside the image
    assert 0.4 < float((sign < 0).float().mean()) < 0.6
    assert crop.apply(images(), params[:6]).shape == (6, 3, 5, 7)
    # the centre quarter of an image whose centre is bright and border dark
    x = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    x[..., 2:6, 2:6] = 255
    centre = torch.tensor([[0.5, 0.5, 0.0, 0.0, 1.0]])
    assert torch.allclose(ResizedCrop((4, 4)).apply(x, centre), torch.ones(1, 1, 4, 4))


def test_random_resized_crop_in_memory_evaluates_on_the_centre_crop_normalised(tmp_path):
    config = load_config(None, [("data.augment", "random-resized-crop"), ("data.image_size", [6, 6]),
                                ("data.mean", [0.5, 0.5, 0.5]), ("data.std", [0.25, 0.25, 0.25])])
    split = ImageData(images(), torch.arange(6), 6)
    data = _finish(config.data, torch.device("cpu"), split, split, split)
    aug = config.data.augmentation()
    assert isinstance(aug, ResizedCrop) and aug.size == (6, 6) and not aug.views
    (x, _, key), = list(batches(data.train, 6, shuffle=True, seed=0, epoch=3, aug=aug))
    assert x.shape == (6, 3, 6, 6) and torch.equal(key.sort().values, torch.arange(6) + 3 * 6)  # (epoch, example)
    (again, _, _), = list(batches(data.train, 6, shuffle=True, seed=0, epoch=3, aug=aug))
    assert torch.equal(x, again)                                  # the epoch's draws, again
    (val, _, _), = list(batches(data.val, 6))
    expected = (CentreCrop((6, 6), 0.875)(split.images) - 0.5) / 0.25
    assert torch.allclose(val, expected, atol=1e-6)


@pytest.mark.parametrize("key, value, needle", [
    ("data.augment", "autoaugment", "data.augment must be one of none, pad-flip, random-resized-crop"),
    ("data.crop_scale", [0.5, 0.2], "data.crop_scale must be"),
    ("data.eval_crop", 1.5, "data.eval_crop must be in (0, 1]"),
    ("data.mean", [0.5], "data.mean and data.std go together"),
])
def test_bad_preset_settings_are_one_line(key, value, needle):
    with pytest.raises(Exception, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(None, [(key, value)])


def test_a_run_with_random_resized_crop_from_the_command_line(tmp_path, fashion_dir, capsys):
    from fitnets.tools.cli import main

    argv = ["distill", "--method", "kd", "--epochs", "1", "--train-size", "300", "--val-size", "100", "--no-progress",
            "--set", "data.test_size=200", "--set", "data.augment=random-resized-crop", "--set", "data.flip=true",
            "--out", str(tmp_path), "--name", "rrc"]
    assert main(argv) == 0
    assert "are drawn, not enumerable" in capsys.readouterr().err   # no store for drawn views unless asked
    assert (tmp_path / "rrc" / "results.json").is_file()
