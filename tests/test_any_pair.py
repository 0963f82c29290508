"""Any pair joins: a ViT's tokens (class and distillation tokens left out, patches reshaped to their grid) on
either side, CNN maps of sizes the paper's rule cannot join (resampled), each with the hint stage's guarantees:
the regressor's output has the hint's shape, gradients reach the student up to the guided layer and the
regressor only, the teacher gets none, and both forwards stop after their layer."""

import pytest
import torch
from torch import nn

from fitnets.core.features import token_layout
from fitnets.core.fitnet import FitNet
from fitnets.errors import FitNetsError


class TinyViT(nn.Module):
    """A ViT in the usual style: patch embedding, a class token and a distillation token (DeiT), blocks."""

    def __init__(self, image=16, patch=4, dim=24, depth=4, channels=1, num_classes=10, extra=2):
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.extra = nn.Parameter(torch.zeros(1, extra, dim))
        self.pos = nn.Parameter(torch.zeros(1, extra + (image // patch) ** 2, dim))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
                                    for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.extra.expand(len(x), -1, -1), tokens], 1) + self.pos
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(tokens[:, 0])


class CNN(nn.Module):
    def __init__(self, channels=1, width=8, num_classes=10, pool_rows=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d((2, 1) if pool_rows else 2))
        self.layer2 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))).flatten(1))


def check(fitnet, teacher, student, later_student, later_teacher):
    """The hint stage's guarantees for any pair."""
    x = torch.randn(4, 1, 16, 16)
    ran = []
    hooks = [m.register_forward_hook(lambda *a, name=n: ran.append(name)) for n, m in
             (("student", later_student), ("teacher", later_teacher))]
    loss = fitnet.hint_loss(x)
    for h in hooks:
        h.remove()
    assert ran == []  # nothing after either layer ran
    loss.backward()
    trained = set(fitnet.stage1_parameter_names())
    for name, p in student.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (name in trained), name
    assert all(p.grad is not None for p in fitnet.regressor.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert fitnet.regressor(fitnet.guided_features(x)).shape[1:] == fitnet.hint_shape


def test_cnn_teacher_vit_student():
    torch.manual_seed(0)
    teacher, student = CNN(width=16), TinyViT()
    fitnet = FitNet(teacher, student, "layer1", "blocks.1", torch.zeros(2, 1, 16, 16))
    assert fitnet.guided_layout.extra == 2 and fitnet.guided_layout.grid == (4, 4)
    assert fitnet.guided_shape == (24, 4, 4) and fitnet.hint_shape == (32, 8, 8)
    assert "Resample(to 8×8)" in fitnet.describe() and "2 extra left out, 4×4 patches" in fitnet.describe()
    check(fitnet, teacher, student, student.blocks[2], teacher.layer2)
    assert "extra" in fitnet.stage1_parameter_names()  # the extra tokens feed the patch tokens through attention


def test_vit_teacher_cnn_student():
    torch.manual_seed(0)
    teacher, student = TinyViT(dim=32, extra=1), CNN(width=4)
    fitnet = FitNet(teacher, student, "blocks.1", "layer1", torch.zeros(2, 1, 16, 16))
    assert fitnet.hint_layout.extra == 1 and fitnet.hint_shape == (32, 4, 4) and fitnet.guided_shape == (8, 8, 8)
    check(fitnet, teacher, student, student.layer2, teacher.blocks[2])


def test_vit_to_vit_and_maps_larger_one_way_smaller_the_other():
    torch.manual_seed(0)
    teacher, student = TinyViT(dim=32), TinyViT(dim=16, patch=2, extra=1)
    fitnet = FitNet(teacher, student, "blocks.1", "blocks.0", torch.zeros(2, 1, 16, 16))
    assert fitnet.guided_shape == (16, 8, 8) and fitnet.hint_shape == (32, 4, 4)
    check(fitnet, teacher, student, student.blocks[1], teacher.blocks[2])
    teacher, student = CNN(width=8, pool_rows=True), CNN(width=4)  # hint (16, 8, 16), guided (8, 8, 8)
    teacher.layer1[2] = nn.MaxPool2d((1, 2))                          # hint (16, 16, 8): taller, narrower
    fitnet = FitNet(teacher, student, "layer1", "layer1", torch.zeros(2, 1, 16, 16))
    assert fitnet.hint_shape == (16, 16, 8) and fitnet.guided_shape == (8, 8, 8)
    assert "Resample(to 16×8)" in fitnet.describe()
    check(fitnet, teacher, student, student.layer2, teacher.layer2)


def test_token_layouts():
    assert token_layout(197, (224, 224)).extra == 1 and token_layout(197, (224, 224)).grid == (14, 14)
    assert token_layout(198, (224, 224)).extra == 2
    assert token_layout(196 + 5, (224, 224)).extra == 5        # a class token and 4 registers
    assert token_layout(1 + 8 * 16, (128, 256)).grid == (8, 16)  # the input's aspect ratio
    assert token_layout(17, (16, 16), extra=1).grid == (4, 4)
    with pytest.raises(FitNetsError, match="cannot lay 17 tokens with 3 extra tokens"):
        token_layout(17, (16, 16), extra=3)


class LinearPatchViT(nn.Module):
    """Patches cut by reshaping and embedded by a Linear: no layer outputs a patch map."""

    def __init__(self, image=16, patch=4, dim=24, extra=1):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch * patch, dim)
        self.extra = nn.Parameter(torch.zeros(1, extra, dim))
        self.blocks = nn.Sequential(nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        b, p = x.shape[0], self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p).reshape(b, -1, p * p)  # (B, h·w, p²)
        tokens = torch.cat([self.extra.expand(b, -1, -1), self.embed(patches)], 1)
        return self.head(self.blocks(tokens)[:, 0])


def test_an_extra_token_count_the_patch_embedding_contradicts_is_refused():
    """65 tokens, 1 extra + 8×8 patches: 49 extra would leave a square 16 (4×4) — scrambled features."""
    torch.manual_seed(0)
    teacher, student = CNN(width=8), TinyViT(patch=2, extra=1)
    with pytest.raises(FitNetsError, match=r"guided_extra_tokens=49 .*patch_embed makes a 8×8 patch grid.* to 1"):
        FitNet(teacher, student, "layer1", "blocks.1", torch.zeros(2, 1, 16, 16), guided_extra_tokens=49)
    fitnet = FitNet(teacher, student, "layer1", "blocks.1", torch.zeros(2, 1, 16, 16), guided_extra_tokens=1)
    assert fitnet.guided_layout.grid == (8, 8)
    # found from the patch embedding's map, not guessed: 1 extra on 8×8 (13 on 2×2 and 16 on 1×1 would fit too)
    teacher, student = TinyViT(dim=32, patch=4, extra=1), CNN(width=4)
    fitnet = FitNet(teacher, student, "blocks.1", "layer1", torch.zeros(2, 1, 16, 16))
    assert fitnet.hint_layout.extra == 1 and fitnet.hint_layout.grid == (4, 4)


def test_an_ambiguous_extra_token_count_is_refused_when_no_layer_shows_the_grid():
    torch.manual_seed(0)
    teacher, student = LinearPatchViT(), CNN(width=4)  # 17 tokens: 1 + 4×4, 13 + 2×2 or 16 + 1×1
    with pytest.raises(FitNetsError, match=r"17 tokens.*1 \(4×4\), 13 \(2×2\), 16 \(1×1\).*set hint_extra_tokens"):
        FitNet(teacher, student, "blocks.0", "layer1", torch.zeros(2, 1, 16, 16))
    fitnet = FitNet(teacher, student, "blocks.0", "layer1", torch.zeros(2, 1, 16, 16), hint_extra_tokens=1)
    assert fitnet.hint_layout.grid == (4, 4)
