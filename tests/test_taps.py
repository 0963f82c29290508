import pytest
import torch

from torch import nn

from fitnets.errors import FitNetsError
from fitnets.models import create_model
from fitnets.core.fitnet import FitNet
from fitnets.core.taps import LayerRef, tap, trace


class Boom(nn.Module):
    def forward(self, x):
        raise AssertionError("the forward should have stopped before this layer")


class TupleNet(nn.Module):
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, x + 1

    class Dict(nn.Module):
        def forward(self, x):
            return {"hidden": x - 1, "note": "not a tensor"}

    class Single(nn.Module):
        def forward(self, x):
            return (x * 3, None)

    def __init__(self):
        super().__init__()
        self.pair, self.dict, self.single = self.Pair(), self.Dict(), self.Single()

    def forward(self, x):
        a, b = self.pair(x)
        h = self.dict(a + b)["hidden"]
        return self.single(h)[0]


@pytest.mark.parametrize("name,paths", [("paper-mnist-teacher", ["conv2"]),
                                        ("paper-mnist-fitnet", ["conv4", "conv2.conv", "conv6"])])
def test_truncated_features_equal_full_forward(name, paths):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        cut = tap(model, x, paths, stop=True)
        full = tap(model, x, paths, stop=False)
    for a, b in zip(cut, full):
        assert torch.equal(a, b)


def test_forward_stops_after_deepest_tapped_layer(tiny):
    model = tiny()
    model.head = Boom()  # runs after `block`: the tap must never reach it
    (out,) = tap(model, torch.randn(2, 1, 8, 8), ["block"])
    assert out.shape == (2, 16, 4, 4)
    with pytest.raises(AssertionError):
        tap(model, torch.randn(2, 1, 8, 8), ["block"], stop=False)


def test_tuple_list_dict_rule():
    net, x = TupleNet(), torch.ones(1, 2)
    with pytest.raises(FitNetsError, match=r"say which in the path: 'pair\[0\]'"):
        tap(net, x, ["pair"])
    (first,) = tap(net, x, ["pair[1]"])
    assert torch.equal(first, x + 1)
    (hidden,) = tap(net, x, ["dict"])           # one tensor among the dict's values: taken as is
    assert torch.equal(hidden, (2 * x + x + 1) - 1)
    (h,) = tap(net, x, ["dict[hidden]"])
    assert torch.equal(h, hidden)
    (single,) = tap(net, x, ["single"])          # a tuple holding one tensor
    assert single.shape == (1, 2)
    with pytest.raises(FitNetsError, match="no tensor output"):
        tap(net, x, ["pair[5]"])
    with pytest.raises(FitNetsError, match="single tensor"):
        tap(create_model("paper-mnist-fitnet"), torch.zeros(1, 1, 28, 28), ["conv1[0]"])


def test_unknown_path_suggests_closest():
    model = create_model("paper-mnist-fitnet")
    with pytest.raises(FitNetsError, match="no layer 'conv44'.*Did you mean: conv4"):
        tap(model, torch.zeros(1, 1, 28, 28), ["conv44"])


def test_layer_that_never_runs(tiny):
    model = tiny()
    model.unused = nn.Linear(2, 2)
    with pytest.raises(FitNetsError, match="never ran"):
        tap(model, torch.zeros(1, 1, 8, 8), ["unused"])


def test_layer_ref_parsing():
    assert LayerRef.parse("a.b[0]") == LayerRef("a.b", 0)
    assert LayerRef.parse("enc['hidden']") == LayerRef("enc", "hidden")
    assert str(LayerRef.parse("x.y")) == "x.y"
    with pytest.raises(FitNetsError):
        LayerRef.parse("a[0][1]")


def test_trace_lists_every_layer_with_shape():
    rows = {path: shape for path, _, shape in trace(create_model("paper-mnist-teacher"), torch.zeros(1, 1, 28, 28))}
    assert rows["conv2"] == "(48, 4, 4)"   # the paper's hint: 4×4×48
    assert rows["conv1"] == "(48, 10, 10)"
    assert rows["classifier"] == "(10,)"


def test_input_the_model_cannot_take():
    model = create_model("paper-mnist-fitnet")
    with pytest.raises(FitNetsError, match=r"cannot run on an input of shape \(1, 1, 32, 32\)"):
        trace(model, torch.zeros(1, 1, 32, 32))
    with pytest.raises(FitNetsError, match="cannot run on an input"):  # FitNet's dry run finds the shapes
        FitNet(create_model("paper-mnist-teacher"), model, "conv2", "conv4", torch.zeros(1, 3, 28, 28))


def test_a_model_of_another_dtype_is_named_as_such_not_as_a_shape():
    model = create_model("paper-mnist-fitnet").double()
    with pytest.raises(FitNetsError, match=r"float64 weights.*float32 input.*model\.float\(\)") as err:
        trace(model, torch.zeros(1, 1, 28, 28))
    assert "shape" not in str(err.value)
    with pytest.raises(FitNetsError, match=r"float64 weights"):  # the student of a FitNet, found by its dry run
        FitNet(create_model("paper-mnist-teacher"), model, "conv2", "conv4", torch.zeros(1, 1, 28, 28))


def test_a_failure_outside_a_dry_run_keeps_its_own_message():
    # In training or a cache build, a RuntimeError is a real failure: it is not dressed up as a shape problem.
    model = create_model("paper-mnist-fitnet")
    with pytest.raises(RuntimeError, match="expected input.*to have 1 channels") as info:
        tap(model, torch.zeros(1, 3, 28, 28), ["conv2"])
    assert not isinstance(info.value, FitNetsError)


def test_a_tap_the_forward_runs_past_is_not_changed_by_a_later_inplace_op():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(inplace=True), nn.Conv2d(2, 2, 1)).eval()
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        expected = model[1](model[0](x))
        assert (expected < 0).any()  # the ReLU would zero these in place
        bn, last = tap(model, x, ["1", "3"])
        (bn_stop,) = tap(model, x, ["1"])
        (bn_full,) = tap(model, x, ["1"], stop=False)
    for got in (bn, bn_stop, bn_full):
        torch.testing.assert_close(got, expected)
