"""The teacher-output store: one slot of teacher logits per (example, augmented view), exact against the live
teacher, safe against interrupted writes and damaged files, shared by later runs, refused above its size limit."""

import json
import logging
from pathlib import Path

import pytest
import torch

from fitnets.checkpoint import load_checkpoint
from fitnets.core.losses import kd_loss
from fitnets.core.teacher import FrozenTeacher
from fitnets.data.loader import Augmentation, ImageData, batches
from fitnets.errors import FitNetsError
from fitnets.training import engine
from fitnets.training.config import load_config
from fitnets.training.loading import Data
from fitnets.training.run import Run
from fitnets.training.store import (SlotFile, StoredOutputs, clear_stores, fill, list_stores, open_slots,
                                    store_key)


def synthetic(n=96, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), 10)


def stored(tiny, tmp_path, data=None, aug=Augmentation(1, True), dtype=torch.float32, teacher=None, **kw):
    teacher = teacher or FrozenTeacher(tiny(width=16))
    outputs = StoredOutputs(teacher, data or synthetic(), aug, 10, dtype, tmp_path, **kw)
    outputs.prepare()
    return teacher, outputs


def test_views_are_numbered_and_keys_name_the_image_each_batch_holds():
    assert Augmentation(4, True).views == 162 and Augmentation(2).views == 25 and Augmentation(0, True).views == 2
    assert not Augmentation() and Augmentation(0, True)
    data, aug = synthetic(50), Augmentation(2, True)
    seen = set()
    for x, y, key in batches(data, 16, shuffle=True, seed=1, epoch=4, pad=2, flip=True):
        example, view = key // aug.views, key % aug.views
        assert torch.equal(aug.apply(data.images[example], view).float() / 255, x)
        assert torch.equal(y, data.labels[example])
        seen.update(view.tolist())
    assert len(seen) > 10  # views differ across the epoch
    _, _, key = next(batches(data, 16, shuffle=True, seed=1))
    assert key.max() < len(data)  # without augmentation the key is the example's index


@pytest.mark.parametrize("dtype,bound", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_kd_losses_from_the_store_equal_the_live_teachers(tiny, tmp_path, dtype, bound):
    teacher, outputs = stored(tiny, tmp_path, dtype=dtype)
    student = tiny(width=8)
    for epoch in range(3):  # the first pass fills the slots, the later ones read them (and fill new views)
        for x, y, key in batches(outputs.data, 32, shuffle=True, epoch=epoch, pad=1, flip=True):
            live, store = teacher(x), outputs(x, key)
            logits = student(x)
            a = kd_loss(logits, live, y, 4.0, 3.0)["kd_loss"].item()
            b = kd_loss(logits, store, y, 4.0, 3.0)["kd_loss"].item()
            assert abs(a - b) <= bound * abs(a), (epoch, a, b)
    outputs.metrics()
    x, _, key = next(batches(outputs.data, 32, shuffle=True, epoch=0, pad=1, flip=True))
    outputs(x, key)
    assert outputs.metrics()["store_hit_rate"] == 1.0  # an epoch seen before: every view is in the store


def test_an_interrupted_write_never_reads_as_filled(tiny, tmp_path):
    teacher, outputs = stored(tiny, tmp_path)
    slots = outputs.slots
    x, _, key = next(batches(outputs.data, 8, pad=1, flip=True))
    slots.values[key] = teacher(x)          # the values were written, the checksums not yet (killed in between)
    assert not slots.read(key)[1].any()
    torch.testing.assert_close(outputs(x, key), teacher(x))
    assert slots.read(key)[1].all()         # computed live and written properly


def test_a_damaged_slot_is_detected_and_computed_again(tiny, tmp_path):
    teacher, outputs = stored(tiny, tmp_path)
    x, _, key = next(batches(outputs.data, 8, pad=1, flip=True))
    outputs(x, key)
    outputs.metrics()
    outputs.slots.values[key[3], 2] += 1.0  # one logit of one slot changes on disk
    _, intact = outputs.slots.read(key)
    assert intact.tolist() == [i != 3 for i in range(8)]
    torch.testing.assert_close(outputs(x, key), teacher(x))  # the damaged value is never used
    assert outputs.metrics()["store_hit_rate"] == 7 / 8 and outputs.slots.read(key)[1].all()


def test_a_store_whose_files_do_not_match_is_rebuilt(tiny, tmp_path, caplog):
    teacher, outputs = stored(tiny, tmp_path)
    x, _, key = next(batches(outputs.data, 8, pad=1, flip=True))
    outputs(x, key)
    path = outputs.slots.path
    with open(path / "values.bin", "r+b") as f:
        f.truncate(100)
    with caplog.at_level(logging.WARNING):
        _, again = stored(tiny, tmp_path, teacher=teacher)
    assert "is damaged" in caplog.text and again.slots.path == path and again.slots.filled() == 0
    (path / "meta.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        _, third = stored(tiny, tmp_path, teacher=teacher)
    assert third.slots.filled() == 0 and caplog.text.count("is damaged") == 2


def test_a_store_above_its_limit_is_refused_with_the_figure_and_the_run_goes_live(tiny, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        teacher, outputs = stored(tiny, tmp_path, data=synthetic(4000), aug=Augmentation(4, True), max_gb=0.01)
    assert outputs.live and outputs.slots is None and not list_stores(tmp_path)
    message = caplog.text
    assert "would take 29.7 MB, above store.max_gb = 0.01" in message and "--set store.max_gb=" in message
    x, _, key = next(batches(outputs.data, 8, pad=4, flip=True))
    torch.testing.assert_close(outputs(x, key), teacher(x))


def test_the_key_changes_with_everything_the_outputs_depend_on(tiny):
    torch.manual_seed(0)
    teacher, other = tiny(width=16), tiny(width=16)
    data, aug = synthetic(), Augmentation(1, True)
    key = store_key(teacher, None, data, aug, torch.float32)
    assert key == store_key(teacher, None, synthetic(), Augmentation(1, True), torch.float32)
    changed = synthetic()
    changed.images[5, 0, 3, 3] ^= 1
    for variant in (store_key(other, None, data, aug, torch.float32),
                    store_key(teacher, torch.bfloat16, data, aug, torch.float32),
                    store_key(teacher, None, changed, aug, torch.float32),
                    store_key(teacher, None, data, Augmentation(2, True), torch.float32),
                    store_key(teacher, None, data, Augmentation(1, False), torch.float32),
                    store_key(teacher, None, data, aug, torch.bfloat16)):
        assert variant != key


def test_fill_writes_every_view_list_and_clear_see_it(tiny, tmp_path):
    teacher, outputs = stored(tiny, tmp_path, data=synthetic(20), aug=Augmentation(1, False))
    done, total = fill(outputs, batch_size=7, progress=False)
    assert done == total == 20 * 9 and outputs.slots.filled() == total
    data, aug = outputs.data, outputs.aug
    for view in range(aug.views):  # each slot holds the teacher's logits for exactly that view
        slots = torch.arange(20) * aug.views + view
        expected = teacher(aug.apply(data.images, torch.full((20,), view)).float() / 255)
        torch.testing.assert_close(outputs.slots.read(slots)[0], expected)
    assert fill(outputs, progress=False) == (0, total)  # nothing left to do
    (info,) = list_stores(tmp_path)
    assert info.filled == info.slots == total and info.meta["views"] == 9
    assert clear_stores(tmp_path) == [info.path] and not list_stores(tmp_path)


def test_processes_opening_one_store_share_it(tiny, tmp_path):
    meta = {"slots": 10, "examples": 5, "views": 2, "width": 3, "dtype": "float32"}
    a, created_a = open_slots(tmp_path, "ab" * 16, meta, 1.0)
    b, created_b = open_slots(tmp_path, "ab" * 16, meta, 1.0)
    assert created_a and not created_b
    a.write(torch.tensor([4]), torch.tensor([[1.0, 2.0, 3.0]]))
    values, filled = SlotFile(b.path, b.meta).read(torch.tensor([4, 5]))
    assert filled.tolist() == [True, False] and values[0].tolist() == [1.0, 2.0, 3.0]


def run(tmp_path, name, epochs=3, **extra):
    config = load_config(None, [("method", "kd"), ("student", "paper-mnist-fitnet"), ("epochs", epochs),
                                ("data.pad", 1), ("data.flip", True), ("data.batch_size", 32),
                                ("out", str(tmp_path / "runs")), ("name", name), *extra.items()])
    return Run(config, progress=False)


def data28():
    return Data(synthetic(160, 0, 28), synthetic(32, 1, 28), synthetic(32, 2, 28))


def rows(tmp_path, name):
    return [json.loads(line) for line in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]


def test_a_second_run_reads_what_the_first_filled(tmp_path, monkeypatch):
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    data = data28()
    first = run(tmp_path, "first").execute(data=data)
    second = run(tmp_path, "second").execute(data=data)
    assert [r["store_hit_rate"] for r in rows(tmp_path, "first")][0] == 0
    assert [r["store_hit_rate"] for r in rows(tmp_path, "second")] == [1.0, 1.0, 1.0]
    assert first["test_acc"] == second["test_acc"]  # the same seed, the same teacher outputs
    run(tmp_path, "seed1", seed=1).execute(data=data)  # another seed: other views, some of them already stored
    assert 0 < rows(tmp_path, "seed1")[0]["store_hit_rate"] < 1
    # what it read from the store shared with seed 0 is what the teacher gives: the student of a live run
    run(tmp_path, "seed1-live", seed=1, **{"store.enabled": False}).execute(data=data)
    assert "store_hit_rate" not in rows(tmp_path, "seed1-live")[0]  # no store: the teacher ran live
    shared, live = (load_checkpoint(tmp_path / "runs" / n / "student.safetensors")[0] for n in ("seed1", "seed1-live"))
    assert shared.keys() == live.keys() and all(torch.equal(shared[k], live[k]) for k in live)


def test_an_interrupted_run_resumed_from_a_half_filled_store_gives_the_uninterrupted_student(tmp_path, monkeypatch):
    data = data28()
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "fresh"))
    run(tmp_path, "whole").execute(data=data)
    reference, _ = load_checkpoint(tmp_path / "runs" / "whole" / "student.safetensors")
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "other"))  # a store of its own, filled as it goes
    real, calls = engine.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # mid-way through the second epoch (5 steps per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "cut").execute(data=data)
    monkeypatch.setattr(engine, "train_step", real)
    run(tmp_path, "cut").execute(resume=True, data=data)
    student, _ = load_checkpoint(tmp_path / "runs" / "cut" / "student.safetensors")
    assert all(torch.equal(student[k], reference[k]) for k in reference)


# ---------------------------------------------------------------- the command line

SMALL = ["--method", "kd", "--set", "data.pad=1", "--set", "data.flip=true", "--train-size", "300", "--val-size",
         "100", "--no-progress"]


def test_store_build_list_and_clear_from_the_command_line(tmp_path, monkeypatch, capsys, fashion_dir):
    from fitnets.tools.cli import main

    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path))
    assert main(["store", "build", *SMALL]) == 0
    out = capsys.readouterr()
    assert "5,400 of 5,400 slots filled (5,400 now by this process)" in out.out and "pays off once" in out.err
    assert main(["store", "list"]) == 0
    listing = capsys.readouterr().out
    assert "| paper-mnist-teacher | fashion-mnist | 300 × 18 | 10 | float32 |" in listing and "100.0%" in listing
    assert main(["distill", *SMALL, "--epochs", "1", "--out", str(tmp_path / "runs"), "--name", "r"]) == 0
    row = json.loads((tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["store_hit_rate"] == 1.0  # a run after `store build` never runs the teacher
    assert main(["store", "clear"]) == 0 and "deleted 1 store(s)" in capsys.readouterr().out
    assert main(["store", "list"]) == 0 and "no teacher-output stores" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["store", "build", "--method", "kd", "--train-size", "50"], "no random augmentation"),
    (["store", "build", "--method", "ce", "--set", "data.pad=1"], "method ce reads no teacher logits"),
    (["store", "clear", "0123"], "no teacher-output store '0123'"),
    (["store", "build", "--method", "kd", "--train-size", "50", "--set", "data.augment=random-resized-crop", "--set",
      "store.per_epoch=true"], "the runs that draw them fill it, not ahead of time"),  # was a TypeError (issue 27)
])
def test_store_command_mistakes_are_one_line(tmp_path, monkeypatch, capsys, argv, needle):
    from fitnets.tools.cli import main

    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


def test_the_fixed_preset_follows_the_hardware(monkeypatch):
    """What `bench step` times beside --fast's measured choice: the preset --fast was, by hardware alone."""
    from fitnets.training import fast

    monkeypatch.setattr(fast, "native_bf16", lambda device: False)  # emulated bf16 would slow the student down
    monkeypatch.setattr(fast, "compiler_available", lambda device: False)
    assert dict(fast.preset_options(torch.device("cpu"))) == {
        "teacher_dtype": "bfloat16", "cache_dtype": "bfloat16", "channels_last": True, "teacher_channels_last": True}
    monkeypatch.setattr(fast, "native_bf16", lambda device: True)
    assert dict(fast.preset_options(torch.device("cpu")))["student_dtype"] == "bfloat16"


# ---------------------------------------------------------------- damage and mistakes around the cache folder

META = {"slots": 40, "examples": 20, "views": 2, "width": 3, "dtype": "float32"}


def test_an_empty_key_clears_nothing(tmp_path):
    store, _ = open_slots(tmp_path, "ab" * 16, META, 1.0)
    with pytest.raises(FitNetsError, match="an empty key"):
        clear_stores(tmp_path, key="")
    assert store.path.is_dir()


def test_list_counts_only_the_slots_whose_checksum_matches(tmp_path):
    store, _ = open_slots(tmp_path, "ab" * 16, META, 1.0)
    store.write(torch.arange(40), torch.randn(40, 3))
    store.values[::10, 1] += 1.0  # a tenth of the slots damaged on disk: their checksums still nonzero
    (info,) = list_stores(tmp_path)
    assert info.filled == 36 and info.damaged == 4
    assert store.filled(chunk=7) == 36  # the count is the same read in chunks
    assert store.empty_slots().tolist() == [0, 10, 20, 30]  # what `fitnets store build` fills again


@pytest.mark.parametrize("text", ["[1, 2]", "3", '"meta"', "null"])
def test_a_meta_json_that_is_not_an_object_is_a_damaged_store(tmp_path, caplog, text):
    store, _ = open_slots(tmp_path, "ab" * 16, META, 1.0)
    (store.path / "meta.json").write_text(text)
    (info,) = list_stores(tmp_path)
    assert info.meta.get("damaged")
    with caplog.at_level(logging.WARNING):
        again, created = open_slots(tmp_path, "ab" * 16, META, 1.0)
    assert created and "is damaged" in caplog.text


def test_a_read_only_cache_folder_is_one_line_and_the_run_goes_live(tiny, tmp_path, monkeypatch, caplog):
    """What the OS does to a user who cannot write the folder (root, who runs these tests, can): torch cannot map
    the files for writing, and nothing can be deleted."""
    from fitnets.training import store as store_module

    teacher, first = stored(tiny, tmp_path)
    x, _, key = next(batches(first.data, 8, pad=1, flip=True))
    first(x, key)
    real_from_file = torch.from_file

    def from_file(path, shared=None, size=0, **kw):
        if shared:
            raise RuntimeError(f"unable to open file <{path}> in read-write mode: Permission denied (13)")
        return real_from_file(path, shared, size, **kw)

    def rmtree(path, ignore_errors=False):
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", str(Path(path) / "check.bin"))

    monkeypatch.setattr(torch, "from_file", from_file)
    monkeypatch.setattr(store_module.shutil, "rmtree", rmtree)
    with caplog.at_level(logging.WARNING):  # a run: one warning, and the teacher runs live
        _, outputs = stored(tiny, tmp_path, teacher=teacher)
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert outputs.live and "is read-only (Permission denied (13))" in record.message
    assert "the teacher runs live" in record.message and "\n" not in record.message
    torch.testing.assert_close(outputs(x, key), teacher(x))
    (info,) = list_stores(tmp_path)
    assert info.filled == 8 and not info.meta.get("damaged")
    with pytest.raises(FitNetsError, match="cannot delete the teacher-output store") as err:
        clear_stores(tmp_path)
    assert "\n" not in str(err.value) and first.slots.path.is_dir()


def test_a_cache_folder_that_is_a_file_is_one_clear_line(tmp_path, monkeypatch, capsys, fashion_dir):
    """$FITNETS_CACHE naming a file: one line before anything runs, not a 'could not write' beside a 'make it
    writable' (issue 27)."""
    from fitnets.tools.cli import main

    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    for argv in (["distill", *SMALL, "--epochs", "1", "--out", str(tmp_path), "--fast"], ["store", "list"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: $FITNETS_CACHE is") and "not a folder" in err, err
