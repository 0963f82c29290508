"""Your data checked at the door (``fitnets.data.checks``): labels, the number of classes and the first items
before anything trains — one line each, naming the split and the item — and a bad item met later by its index."""

import pytest
import torch
from torch import nn

import fitnets
from conftest import user_module
from fitnets.data.checks import AGREE_ITEMS
from fitnets.data.datasets import DatasetSplit
from fitnets.tools.cli import main

USER_DATA = '''
import torch

class Items(torch.utils.data.Dataset):
    """48 small images in 4 classes; ``labels`` replaces the labels, ``broken`` is an index whose item raises,
    ``nan`` one whose input holds a NaN; ``expose`` keeps the labels as a ``targets`` attribute."""
    def __init__(self, n=48, labels=None, broken=None, nan=None, expose=False):
        g = torch.Generator().manual_seed(n)
        self.x = torch.rand(n, 1, 6, 6, generator=g)
        self.y = labels if labels is not None else torch.arange(n) % 4
        self.broken, self.nan = broken, nan
        if expose:
            self.targets = self.y
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        if i == self.broken:
            raise OSError(f"cannot read image {i}.png")
        x = self.x[i].clone()
        if i == self.nan:
            x[0, 0, 0] = float("nan")
        return x, self.y[i]

def broken():   # num_classes given: no counting pass, so item 40 is first read while training, by the workers
    return {"train": Items(broken=40), "test": Items(16), "num_classes": 4}

def classes_named():
    return {"train": Items(), "test": Items(16), "num_classes": "ten"}

def student():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4))
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    return user_module(tmp_path, monkeypatch, "checkdata", USER_DATA)


def _student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 4))


def _train(user, tmp_path, train, **kw):
    kw.setdefault("overrides", {"data.workers": 0})
    if "val" not in kw:   # without val=, 8 examples are held out of train
        kw["val_size"] = 8
    return fitnets.train(_student(), train, out=str(tmp_path), name="r", epochs=1, batch_size=8, progress=False,
                         **kw)


def _assert_nothing_trained(tmp_path):
    assert not (tmp_path / "r" / "last.safetensors").exists() and not (tmp_path / "r" / "metrics.jsonl").exists()


@pytest.mark.parametrize("where, labels, kw, needle", [
    ("train", torch.tensor([4] + [0, 1, 2, 3] * 11 + [0, 1, 2]), {"num_classes": 4},
     "the label of item 0 of the training set is 4, beyond the 4 classes (0…3); give num_classes=5"),
    ("train", torch.tensor([0, 1, 2, -1] * 12), {}, "the label of item 3 of the training set is -1: labels are class"),
    ("train", torch.arange(48) % 10, {"num_classes": 5},   # a num_classes below the labels: advice that works
     "is 5, beyond the 5 classes (0…4); give num_classes="),
    ("val", torch.tensor([0, 1, 2, 3, 0, 9] + [0, 1, 2, 3] * 10 + [0, 1]), {},
     "the label of item 5 of the validation set is 9, beyond the 4 classes"),
    ("test", torch.tensor([0, 1, 2, 3, 0, 7] + [0, 1, 2, 3] * 10 + [0, 1]), {},
     "the label of item 5 of the test set is 7, beyond the 4 classes"),
    ("train", torch.nn.functional.one_hot(torch.arange(48) % 4).float(), {},
     "for one-hot labels give label"),
    ("train", (torch.arange(48) % 4).float() + 0.7, {}, "is 0.7, not a class index"),
])
@pytest.mark.parametrize("expose", [False, True])
def test_labels_are_checked_before_anything_trains(user, tmp_path, where, labels, kw, needle, expose):
    good = user.Items()
    bad = user.Items(labels=labels, expose=expose)
    splits = {"train": (bad, {}), "val": (good, {"val": bad}), "test": (good, {"test": bad})}[where]
    with pytest.raises(fitnets.FitNetsError) as err:
        _train(user, tmp_path, splits[0], **splits[1], **kw)
    assert needle in str(err.value) and "\n" not in str(err.value), err.value
    _assert_nothing_trained(tmp_path)


def test_exposed_labels_are_checked_in_full_before_anything_trains(user, tmp_path):
    labels = torch.arange(48) % 4
    labels[47] = 7   # far beyond the items read at the door, but the Dataset exposes its targets
    with pytest.raises(fitnets.FitNetsError, match="the label of item 47 of the test set is 7, beyond the 4"):
        _train(user, tmp_path, user.Items(), test=user.Items(labels=labels, expose=True))
    _assert_nothing_trained(tmp_path)


def test_num_classes_below_exposed_labels_is_told_the_number_they_need(user, tmp_path):
    with pytest.raises(fitnets.FitNetsError, match=r"is 5, beyond the 5 classes \(0…4\); give num_classes=10 \(the "
                                                   r"labels reach 9\)"):
        _train(user, tmp_path, user.Items(labels=torch.arange(48) % 10, expose=True), num_classes=5)


def test_a_hugging_face_datasets_label_column_is_read_without_its_items(user, tmp_path, caplog):
    class Columns(user.Items):   # as datasets.Dataset: column_names, ds["labels"] the column, ds[i] a dict
        column_names = ["pixel_values", "labels"]
        reads = 0
        def __getitem__(self, i):
            if i == "labels":
                return self.y.tolist()
            Columns.reads += 1
            x, y = super().__getitem__(i)
            return {"pixel_values": x, "labels": int(y)}
    labels = torch.arange(48) % 4
    labels[47] = 9   # beyond the items read at the door, found in the column
    with pytest.raises(fitnets.FitNetsError, match="the label of item 47 of the training set is 9"):
        _train(user, tmp_path, Columns(labels=labels), num_classes=4)
    Columns.reads = 0
    split = DatasetSplit(Columns(), name="the training set")   # the classes counted from the column
    assert split.num_classes == 4 and Columns.reads == AGREE_ITEMS and "one pass over" not in caplog.text


def test_an_attribute_the_items_do_not_give_is_not_used(user, tmp_path):
    class Shifted(user.Items):   # torchvision's target_transform: the items give targets − 1, the attribute not
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x, y - 1
    data = Shifted(labels=torch.arange(48) % 4 + 1, expose=True)
    results = _train(user, tmp_path, data, num_classes=4)   # the items' labels 0…3 fit: no refusal
    assert 0 <= results["test_acc"] <= 1 and (tmp_path / "r" / "student.safetensors").is_file()


def test_a_label_beyond_the_classes_met_after_the_first_items_names_its_index(user, tmp_path):
    labels = torch.arange(48) % 4
    labels[30] = 6   # not exposed as an attribute, beyond the items read at the door: met while training
    with pytest.raises(fitnets.FitNetsError, match="the label of item 30 of the training set is 6, beyond the 4"):
        _train(user, tmp_path, user.Items(labels=labels), num_classes=4)


@pytest.mark.parametrize("value", ["ten", 4.0, 1, True])
def test_num_classes_must_be_an_int(user, tmp_path, value):
    with pytest.raises(fitnets.FitNetsError, match=f"num_classes is {value!r}: give the number of classes as an int"):
        _train(user, tmp_path, user.Items(), num_classes=value)


def test_a_factorys_num_classes_that_is_not_an_int_is_one_line(user, tmp_path, capsys):
    argv = ["train", "--student", "checkdata:student", "--data", "checkdata:classes_named", "--epochs", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the 'num_classes' checkdata:classes_named returned is 'ten': give" in err, err


@pytest.mark.parametrize("workers", [0, 2])
def test_an_item_that_raises_is_one_line_naming_index_split_and_error_from_python(user, tmp_path, workers):
    with pytest.raises(fitnets.FitNetsError) as err:
        _train(user, tmp_path, user.Items(broken=40), num_classes=4, overrides={"data.workers": workers})
    assert str(err.value) == "item 40 of the training set raised OSError: cannot read image 40.png", err.value


@pytest.mark.parametrize("workers", [0, 2])
def test_an_item_that_raises_is_one_line_from_the_command_line(user, tmp_path, capsys, workers):
    argv = ["train", "--student", "checkdata:student", "--data", "checkdata:broken", "--epochs", "1", "--val-size",
            "8", "--out", str(tmp_path), "--no-progress", "--set", f"data.workers={workers}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: item 40 of the training set raised OSError: cannot read image 40.png\n", err


def test_an_item_that_raises_at_the_door_is_met_before_training(user, tmp_path):
    with pytest.raises(fitnets.FitNetsError, match="item 2 of the test set raised OSError"):
        _train(user, tmp_path, user.Items(), test=user.Items(16, broken=2))
    _assert_nothing_trained(tmp_path)


@pytest.mark.parametrize("index", [3, 40])   # at the door, and met later while training
def test_a_nan_in_an_item_names_the_item(user, tmp_path, index):
    with pytest.raises(fitnets.FitNetsError, match=f"the input of item {index} of the training set holds NaN"):
        _train(user, tmp_path, user.Items(nan=index))


@pytest.mark.parametrize("key, value", [("data.mean", [float("nan")]), ("data.std", [float("inf")]),
                                        ("data.std", [0.0])])
def test_mean_and_std_must_be_finite(user, tmp_path, key, value):
    other = {"data.mean": [0.5], "data.std": [0.25]}
    with pytest.raises(fitnets.FitNetsError, match="one finite value per channel, std > 0"):
        _train(user, tmp_path, user.Items(), overrides={**other, key: value, "data.workers": 0})
