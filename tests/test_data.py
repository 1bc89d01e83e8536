"""Data sets: the real Fashion-MNIST, generated MNIST / CIFAR-10 files, and every broken-file error."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import broken, make_cifar, make_mnist
from trainers import data
from trainers.data import DataError

# MD5 of the decompressed files, measured on the Debian copy (see shared/NOTES.md)
FASHION_MD5 = {
    ("train", "images"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("train", "labels"): "9018921c3c673c538a1fc5bad174d6f9",
    ("test", "images"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("test", "labels"): "15d484375f8d13e6eb1aabb0c3f46965",
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in an empty folder (no ./data), with no $LIVETRAIN_DATA and a fresh cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "_cache", {})


def test_real_fashion_mnist_loads() -> None:
    ds = data.load("fashion-mnist")
    assert (len(ds.train), len(ds.test)) == (60_000, 10_000)
    assert ds.train.images.shape == (60_000, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (10_000, 1, 28, 28)
    assert ds.train.labels.dtype == torch.int64
    assert torch.bincount(ds.train.labels).tolist() == [6_000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1_000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10
    # the bytes are the published data set, not merely the right shape
    for split in ("train", "test"):
        s = getattr(ds, split)
        n = len(s)
        images = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        labels = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
        images += s.images.numpy().tobytes()
        labels += s.labels.to(torch.uint8).numpy().tobytes()
        assert hashlib.md5(images).hexdigest() == FASHION_MD5[(split, "images")]
        assert hashlib.md5(labels).hexdigest() == FASHION_MD5[(split, "labels")]


def test_each_split_is_loaded_once() -> None:
    assert data.load("fashion-mnist") is data.load("fashion-mnist")


@pytest.mark.parametrize("gz", [True, False])
def test_generated_mnist_loads_from_data_dir(tmp_path: Path, gz: bool) -> None:
    arrays = make_mnist(tmp_path / "mine", gz=gz)
    ds = data.load("mnist", tmp_path / "mine")
    assert ds.classes == tuple("0123456789")
    assert ds.train.images.shape == (50, 1, 28, 28) and ds.test.images.shape == (20, 1, 28, 28)
    assert np.array_equal(ds.train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(ds.test.labels.numpy(), arrays["test"][1])


def test_search_order_prefers_data_dir_then_env_then_dot_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "data" / "mnist", n_train=11)  # ./data/mnist
    make_mnist(tmp_path / "env", n_train=12)
    make_mnist(tmp_path / "flag", n_train=13)
    assert len(data.load("mnist").train) == 11
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert len(data.load("mnist").train) == 12
    assert len(data.load("mnist", tmp_path / "flag").train) == 13


def test_torchvision_layout_is_found(tmp_path: Path) -> None:
    make_mnist(tmp_path / "data" / "FashionMNIST" / "raw", n_train=7)
    ds = data.load("fashion-mnist")
    assert len(ds.train) == 7 and ds.source == Path("data/FashionMNIST/raw")


@pytest.mark.parametrize("binary, subdir", [(False, "cifar-10-batches-py"), (True, "cifar-10-batches-bin")])
def test_generated_cifar10_loads(tmp_path: Path, binary: bool, subdir: str) -> None:
    test_images = make_cifar(tmp_path / "data" / subdir, binary=binary)
    ds = data.load("cifar10")
    assert ds.train.images.shape == (30, 3, 32, 32) and ds.test.images.shape == (6, 3, 32, 32)
    assert ds.image_shape == (3, 32, 32) and ds.classes[0] == "airplane"
    assert np.array_equal(ds.test.images.numpy(), test_images)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    make_cifar(folder)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR-10 batch"):
        data.load("cifar10", folder)


@pytest.mark.parametrize("how, message", [
    ("truncated", r"train-images-idx3-ubyte is truncated: its header promises 50 items \(39216 bytes\) "
                  r"but it holds 39116 bytes; get a fresh copy"),
    ("wrong-magic", r"train-images-idx3-ubyte is not an IDX image file \(magic number 0x00001803, "
                    r"expected 0x00000803\)"),
    ("mismatched-count", r"has 50 images but train-labels-idx1-ubyte has 47 labels; "
                         r"the files do not belong together"),
    ("missing", r"MNIST in .*broken is incomplete: train-images-idx3-ubyte\[\.gz\] is missing; put the four"),
    ("damaged-gzip", r"train-images-idx3-ubyte.gz is a damaged gzip file .*; get a fresh copy"),
    ("bad-label", r"train-labels-idx1-ubyte has label 12, outside 0-9"),
    ("wrong-size", r"holds 32x32 images, not 28x28"),
])
def test_broken_files_give_one_line_errors(tmp_path: Path, how: str, message: str) -> None:
    folder = broken(tmp_path, how)
    with pytest.raises(DataError, match=message) as info:
        data.load("mnist", folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("empty, words", [("train", "the training split"), ("test", "the test split")])
def test_a_split_of_no_images_is_a_data_error(tmp_path: Path, empty: str, words: str) -> None:
    """An IDX header of 0 items is a valid file: refused at load, not a division by zero later."""
    make_mnist(tmp_path / "mnist", **{f"n_{empty}": 0})
    with pytest.raises(DataError, match=f"MNIST: {words} in .* holds no images; get a fresh copy"):
        data.load("mnist", tmp_path / "mnist")


def test_nothing_found_names_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        data.load("mnist", tmp_path / "nowhere")
    message = str(info.value)
    assert message.startswith(f"MNIST not found (looked in {tmp_path / 'nowhere'}, data); put the four")
    assert "./data/mnist or --data-dir" in message and "\n" not in message


def test_unknown_dataset_is_named() -> None:
    with pytest.raises(DataError, match=r"unknown data set 'svhn'; choose one of fashion-mnist, mnist, cifar10"):
        data.load("svhn")


def test_setup_step_finds_fashion_mnist_offline() -> None:
    assert data.main([]) == 0


def test_pixel_stats_match_the_whole_split_computed_at_once() -> None:
    split = data.load("fashion-mnist").train
    mean, std = data.pixel_stats(split, chunk=7_000)
    x = split.images.float().div(255)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3), keepdim=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(std, x.std(dim=(0, 2, 3), keepdim=True), rtol=0, atol=1e-5)


def test_augmented_images_are_shifted_and_mirrored_copies() -> None:
    """crop: each image moved by its own (dy, dx) of at most CROP_PAD px, 0s where it came in from
    the edge; flip: mirrored left-right; drawn from the generator, on the whole batch at once."""
    images = torch.zeros((64, 1, 28, 28), dtype=torch.uint8)
    images[:, 0, 10, 7] = 255  # one bright pixel, off the vertical axis
    seen_shifts, flipped = set(), 0
    for how in ("crop", "flip", "crop-flip"):
        out = data.augmented(images, how, torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.dtype == torch.uint8
        again = data.augmented(images, how, torch.Generator().manual_seed(1))
        assert torch.equal(out, again)  # the generator's draws, nothing else
        for image in out[:, 0]:
            (row, col), = image.nonzero().tolist()  # still one pixel, nothing else changed
            mirrored = how != "crop" and abs(col - (27 - 7)) <= (data.CROP_PAD if "crop" in how else 0)
            flipped += mirrored
            dx = (col - (27 - 7)) if mirrored else col - 7
            assert abs(row - 10) <= (data.CROP_PAD if "crop" in how else 0) and abs(dx) <= data.CROP_PAD
            if how == "crop":
                seen_shifts.add((row - 10, dx))
    assert len(seen_shifts) > 10 and 40 < flipped < 88  # of 25 shifts; about half of 128 flipped
    # a rank's part of a global batch: the whole batch's draws, sliced
    whole = data.augmented(images, "crop-flip", torch.Generator().manual_seed(2))
    part = data.augmented(images[16:32], "crop-flip", torch.Generator().manual_seed(2), slice(16, 32), 64)
    assert torch.equal(part, whole[16:32])


def test_augmented_batches_resume_inside_an_epoch_as_drawn() -> None:
    """A run resumed inside an epoch (the order's generator as the epoch began, an offset) gets
    the very batches, augmented alike, that the epoch would have gone on with."""
    images = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    whole = list(data.batches(images, labels, 16, generator=torch.Generator().manual_seed(3), augment="crop-flip"))
    later = list(data.batches(images, labels, 16, generator=torch.Generator().manual_seed(3), augment="crop-flip",
                              offset=48))
    assert len(later) == len(whole) - 3
    for (x, y), (x2, y2) in zip(whole[3:], later):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    plain = list(data.batches(images, labels, 16, generator=torch.Generator().manual_seed(3)))
    assert [torch.equal(y, y2) for (_, y), (_, y2) in zip(whole, plain)] == [True] * len(plain)  # same order
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(whole, plain))  # but moved images
