import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fitnets.errors import FitNetsError
from fitnets.core.maxout import Maxout, MaxoutConv2d
from fitnets.core.regressor import Resample, build_regressor, describe_regressor, hint_activation, output_activation

dims = st.integers(1, 9)


@settings(max_examples=80, deadline=None)
@given(c_g=st.integers(1, 6), c_h=st.integers(1, 6), h_g=dims, w_g=dims, h_h=dims, w_h=dims)
def test_regressor_rule(c_g, c_h, h_g, w_g, h_h, w_h):
    larger = h_g >= h_h and w_g >= w_h
    smaller = h_g <= h_h and w_g <= w_h
    kernel = (abs(h_g - h_h) + 1, abs(w_g - w_h) + 1)
    far = kernel[0] > max(h_g, h_h) / 2 or kernel[1] > max(w_g, w_h) / 2
    reg = build_regressor((c_g, h_g, w_g), (c_h, h_h, w_h), "none")
    assert reg(torch.randn(2, c_g, h_g, w_g)).shape == (2, c_h, h_h, w_h)
    if not (larger or smaller) or far:  # resampled to the hint's grid, then a 1×1 convolution
        assert isinstance(reg[0], Resample) and reg[0].size == (h_h, w_h)
        assert type(reg[1]) is nn.Conv2d and reg[1].kernel_size == (1, 1)
        assert reg[1].weight.numel() == c_g * c_h
        return
    layer = reg[0]
    if larger:  # the paper's rule: valid conv with k_i = N_g,i - N_h,i + 1
        assert type(layer) is nn.Conv2d
        assert layer.kernel_size == (h_g - h_h + 1, w_g - w_h + 1)
        assert layer.padding == (0, 0)
    else:
        assert type(layer) is nn.ConvTranspose2d
        assert layer.kernel_size == (h_h - h_g + 1, w_h - w_g + 1)
    k1, k2 = layer.kernel_size
    assert layer.weight.numel() == k1 * k2 * c_g * c_h


def test_resampling_pools_down_and_interpolates_up():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(Resample((2, 2))(x), torch.nn.functional.avg_pool2d(x, 2))
    up = Resample((8, 8))(x)
    assert up.shape == (1, 1, 8, 8) and up.min() >= 0 and up.max() <= 15
    mixed = Resample((2, 8))(x)  # rows pooled, columns interpolated
    assert mixed.shape == (1, 1, 2, 8)
    torch.testing.assert_close(mixed[0, 0, :, 0], torch.tensor([2.0, 10.0]))  # row means of the first column pair
    assert "Resample(to 2×8) → Conv2d" in describe_regressor(build_regressor((3, 4, 4), (5, 2, 8), "none"))


def test_equal_sizes_give_1x1_conv():
    reg = build_regressor((16, 4, 4), (48, 4, 4), "none")
    assert reg[0].kernel_size == (1, 1)


def test_paper_fitnet4_regressor_kernel():
    # §4.1: FitNet 4's guided 8×8×80 → hint 7×7×192 uses a 2×2 kernel.
    reg = build_regressor((80, 8, 8), (192, 7, 7), "none")
    assert reg[0].kernel_size == (2, 2)


def test_flat_features_use_linear_and_rank_mismatch_fails():
    reg = build_regressor((12,), (30,), "none")
    assert isinstance(reg[0], nn.Linear) and reg(torch.randn(3, 12)).shape == (3, 30)
    with pytest.raises(FitNetsError, match="both must be"):
        build_regressor((12,), (3, 4, 4), "none")


def test_activation_follows_hint_layer():
    relu_block = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
    assert isinstance(output_activation(relu_block), nn.ReLU)
    model = nn.Sequential(relu_block, nn.Conv2d(8, 8, 1), nn.Dropout(), nn.Conv2d(8, 8, 1), nn.GELU(), nn.MaxPool2d(2))
    assert isinstance(hint_activation(model, "0"), nn.ReLU)
    assert hint_activation(model, "2") is None            # dropout after a bare conv: linear
    assert isinstance(hint_activation(model, "5"), nn.GELU)  # a pool passes its input's non-linearity through
    reg = build_regressor((4, 5, 5), (8, 5, 5), hint_activation(model, "0"))
    assert isinstance(reg[1], nn.ReLU) and reg[1] is not relu_block[2]
    assert output_activation(nn.Conv2d(3, 3, 1)) is None
    assert len(build_regressor((4, 5, 5), (8, 5, 5), None)) == 1


def test_maxout_hint_gives_maxout_regressor_with_teacher_pieces():
    hint_layer = MaxoutConv2d(1, 48, 8, pieces=2, pool=(4, 2))
    reg = build_regressor((16, 4, 4), (48, 4, 4), output_activation(hint_layer))
    assert isinstance(reg[1], Maxout) and reg[1].pieces == 2
    assert reg[0].out_channels == 96
    assert reg(torch.randn(2, 16, 4, 4)).shape == (2, 48, 4, 4)


def test_unknown_activation_name():
    with pytest.raises(FitNetsError, match="unknown regressor activation"):
        build_regressor((4, 5, 5), (8, 5, 5), "swishy")
    reg = build_regressor((4, 5, 5), (8, 5, 5), "maxout3")
    assert reg[1].pieces == 3 and reg[0].out_channels == 24
