import pytest
import torch
from torch import nn

from fitnets import FrozenTeacher, create_model
from fitnets.core.fold import fold_batchnorm


def trained_like(name, **kw):
    """A model whose batch norms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    model = create_model(name, **kw)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(2):
            model(torch.randn(16, 3, 32, 32))
    return model.eval()


def test_folding_keeps_outputs_and_paths_and_leaves_the_model_alone():
    model = trained_like("resnet20", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, folds = fold_batchnorm(model)
    assert folded is not model
    # resnet20: the stem, 9 blocks × 2 convs, and the 1×1-conv shortcuts into stages 2 and 3 -> 21 pairs
    assert len(folds) == 21
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(isinstance(m, nn.BatchNorm2d) for n, m in model.named_modules() if n.endswith("bn1"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", ["layer2.0.conv1", "layer2.0.bn1", "layer2", "conv1"])
def test_folded_teacher_taps_what_the_unfolded_one_taps(path):
    model = trained_like("resnet20", num_classes=10)
    plain, folded = FrozenTeacher(model), FrozenTeacher(model, fold_bn=True, channels_last=True)
    x = torch.randn(4, 3, 32, 32)
    # several paths at once: the earlier ones are stored while the forward goes on past an in-place ReLU
    paths = [path, "layer3"]
    for a, b in zip(plain.features(x, paths), folded.features(x, paths)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(folded.features(x, [path])[0], plain.features(x, [path])[0], rtol=1e-4, atol=1e-4)


def test_nothing_to_fold_and_untraceable_models_are_left_as_they_are():
    mnist = create_model("paper-mnist-teacher")  # maxout, no batch norm
    assert fold_batchnorm(mnist) == (mnist, {})

    class Dynamic(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    dynamic = Dynamic()
    assert fold_batchnorm(dynamic) == (dynamic, {})


def test_pairs_used_elsewhere_are_not_folded():
    class Reuse(nn.Module):  # the conv's output also feeds the residual: folding would change it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = Reuse().eval()
    assert fold_batchnorm(model)[1] == {}

    class ReadsWeights(nn.Module):  # the forward reads the batch norm's parameters itself
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) * self.bn.weight.abs().mean()

    model = ReadsWeights().eval()
    assert fold_batchnorm(model)[1] == {}


def test_compiled_folded_teacher_gives_the_eager_logits():
    model = trained_like("resnet8", num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    compiled = FrozenTeacher(model, compile=True, fold_bn=True, channels_last=True)
    torch.testing.assert_close(compiled(x), FrozenTeacher(model)(x), rtol=1e-4, atol=1e-4)
