"""`fitnets suggest`: candidate (hint, guided) pairs ranked by depth by compute and how they join, the
registry's default placed among them, and `--probe` adding the fit each reached."""

import torch
from torch import nn

from fitnets.models.registry import create_model
from fitnets.tools.cli import main
from fitnets.tools.suggest import layers, rank
from test_any_pair import CNN, TinyViT


def test_depth_is_the_share_of_compute_half_way_through_a_layer():
    found = {layer.path: layer for layer in layers(create_model("resnet20"), torch.zeros(1, 3, 32, 32))}
    # the three stages of a resnet hold about a third of its convolutions' work each
    assert [round(found[s].depth, 1) for s in ("layer1", "layer2", "layer3")] == [0.2, 0.5, 0.8]
    assert found["layer2.1"].shape == (32, 16, 16) and "layer2.1.conv1" not in found  # blocks, not their insides
    # the stage's last block gives the stage's own output: listed once, as the stage
    assert "layer2.2" not in found and found["layer2.0"].depth < found["layer2.1"].depth < found["layer3"].depth


class Block(nn.Module):
    """A residual block whose shortcut is a Sequential of single layers: a side branch, not the trunk."""

    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.shortcut = nn.Sequential(nn.Conv2d(width, width, 1), nn.BatchNorm2d(width))

    def forward(self, x):
        return torch.relu(self.conv(x)) + self.shortcut(x)


class Stage(nn.Module):
    def __init__(self, cin, cout, blocks):
        super().__init__()
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(Block(cout) for _ in range(blocks)))

    def forward(self, x):
        return self.blocks(self.down(x))


class Encoder(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.stages = nn.ModuleList([Stage(1, width, 1), Stage(width, 2 * width, 3), Stage(2 * width, 4 * width, 1)])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class Nested(nn.Module):
    """Blocks kept as a library keeps them: encoder.stages.1.blocks.0, three levels below the top."""

    def __init__(self, width=8):
        super().__init__()
        self.encoder = Encoder(width)
        self.head = nn.Linear(4 * width, 10)

    def forward(self, x):
        return self.head(self.encoder(x).mean((2, 3)))


def test_blocks_at_any_depth_are_candidates_and_rank():
    x = torch.zeros(1, 1, 32, 32)
    found = {layer.path for layer in layers(Nested(), x)}
    assert {"encoder.stages.1.blocks.0", "encoder.stages.1.blocks.1", "encoder.stages.1"} <= found
    # the encoder wraps the whole trunk (no point in it); a shortcut's layers are a side branch
    assert "encoder" not in found and not any(".shortcut" in path for path in found)
    best = rank(layers(Nested(16), x), layers(Nested(8), x))[0]
    assert (best.hint.path, best.guided.path) == ("encoder.stages.1.blocks.1", "encoder.stages.1.blocks.1")


def test_tokens_are_candidates_on_their_grid_and_pairs_join_across_kinds():
    vit = layers(TinyViT(), torch.zeros(1, 1, 16, 16))
    assert {layer.path for layer in vit} >= {"blocks.0", "blocks.3"} and all(layer.shape == (24, 4, 4)
                                                                          for layer in vit if layer.tokens)
    best = rank(layers(CNN(width=16), torch.zeros(1, 1, 16, 16)), vit)[0]
    assert best.guided.tokens and abs(best.guided.depth - 0.5) < 0.2 and "Resample" in best.joins


def test_suggest_command_ranks_and_probes(capsys, fashion_dir):
    assert main(["suggest", "paper-mnist-teacher", "paper-mnist-fitnet", "--top", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") == 4 and "% of the teacher's compute" in out
    assert "The registry's default pair (conv2 → conv4) ranks #" in out
    assert main(["suggest", "paper-mnist-teacher", "paper-mnist-fitnet", "--top", "3", "--probe", "4",
                 "--train-size", "300", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fit R²" in out and "Best fit after 4 hint steps" in out and "--hint conv2 --guided" in out
    assert main(["suggest", "paper-mnist-teacher", "paper-mnist-fitnet", "--top", "0"]) == 2


class ConvLayer(nn.Module):
    """Hugging Face's ResNetConvLayer: conv, norm, activation (none on the branch's last)."""

    def __init__(self, cin, cout, act=True):
        super().__init__()
        self.convolution, self.normalization = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.activation = nn.ReLU() if act else nn.Identity()

    def forward(self, x):
        return self.activation(self.normalization(self.convolution(x)))


class Bottleneck(nn.Module):
    """Hugging Face's ResNetBottleNeckLayer: the branch's layers in a Sequential, added to the shortcut, then
    the activation."""

    def __init__(self, width):
        super().__init__()
        self.shortcut = nn.Identity()
        self.layer = nn.Sequential(ConvLayer(width, width), ConvLayer(width, width), ConvLayer(width, width, False))
        self.activation = nn.ReLU()

    def forward(self, x):
        hidden = self.layer(x)
        hidden += self.shortcut(x)
        return self.activation(hidden)


class HFResNet(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.embedder = ConvLayer(1, width)
        self.stages = nn.ModuleList([nn.Sequential(*(Bottleneck(width) for _ in range(3))) for _ in range(2)])
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.embedder(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean((2, 3)))


def test_block_outputs_not_a_layer_inside_a_residual_branch():
    found = {layer.path: layer for layer in layers(HFResNet(), torch.zeros(1, 1, 8, 8))}
    assert {"stages.0.0", "stages.0.1", "stages.1.1"} <= set(found)    # the blocks' outputs, after the add
    assert not any(".layer." in path for path in found), sorted(found)  # not the branch's convolutions
    best = rank(layers(HFResNet(16), torch.zeros(1, 1, 8, 8)), list(found.values()))[0]
    assert "layer" not in best.hint.path and "layer" not in best.guided.path
    start, end = best.guided.span
    assert start < best.guided.depth == (start + end) / 2 < end
    spans = f"of the student's compute (the midpoint of the {100 * start:.0f}–{100 * end:.0f}% it spans)"
    assert spans in best.reason()
