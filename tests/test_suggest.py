"""`fitnets suggest`: candidate (hint, guided) pairs ranked by depth by compute and how they join, the
registry's default placed among them, and `--probe` adding the fit each reached."""

import torch

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
