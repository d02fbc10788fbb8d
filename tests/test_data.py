"""Data readers on small data sets made here: CIFAR-10 batch files and ImageFolder trees."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from adaptive_resnet.data import batches, load_images, random_crop_flip
from adaptive_resnet.errors import UserInputError


def make_cifar_batches(root, n_per_batch=20, seed=0):
    """torchvision's cifar-10-batches-py layout, with random pixels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
        truth[name] = (data, labels)
    return truth


def make_image_folder(root, classes=("cat", "dog", "ship"), per_class=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:04d}.png")
                arrays[(split, c, i)] = arr
    return arrays


def test_cifar10_batches_round_trip(tmp_path):
    truth = make_cifar_batches(tmp_path)
    train = load_images(tmp_path, "train")
    assert train.images.shape == (100, 32, 32, 3) and len(train.labels) == 100
    data, labels = truth["data_batch_1"]
    # CHW rows of 3072 bytes become HWC images.
    assert np.array_equal(train.images[0, :, :, 0].ravel(), data[0, :1024])
    assert np.array_equal(train.images[0, 0, 0], data[0, [0, 1024, 2048]])
    assert train.labels[:20].tolist() == labels
    assert load_images(tmp_path, "test").images.shape == (20, 32, 32, 3)


def test_image_folder_labels_follow_sorted_classes_and_cache(tmp_path):
    arrays = make_image_folder(tmp_path / "ds")
    cache = tmp_path / "cache"
    data = load_images(tmp_path / "ds", "train", cache_dir=cache)
    assert data.classes == ["cat", "dog", "ship"]
    assert data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert np.array_equal(data.images[5], arrays[("train", "dog", 1)])  # PNG is lossless
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_images(tmp_path / "ds", "train", cache_dir=cache)
    assert np.array_equal(again.images, data.images) and again.classes == data.classes
    # A damaged cache is rebuilt, not trusted.
    next(cache.glob("*.npz")).write_bytes(b"garbage")
    assert np.array_equal(load_images(tmp_path / "ds", "train", cache_dir=cache).images, data.images)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "data folder not found"),
        (lambda p: p.mkdir(), "has no train/ folder"),
        (lambda p: (p / "train").mkdir(parents=True), "no class folders"),
        (lambda p: (p / "train" / "cat").mkdir(parents=True), "no images"),
    ],
)
def test_missing_or_malformed_data_folder(tmp_path, setup, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(UserInputError, match=message):
        load_images(root, "train")


def test_undecodable_image_and_broken_batch(tmp_path):
    make_image_folder(tmp_path / "ds", per_class=1)
    (tmp_path / "ds" / "train" / "cat" / "9999.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserInputError, match="cannot decode image .*9999.jpg"):
        load_images(tmp_path / "ds", "train")
    make_cifar_batches(tmp_path / "c")
    (tmp_path / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04junk")
    with pytest.raises(UserInputError, match="malformed CIFAR-10 batch"):
        load_images(tmp_path / "c", "test")


def test_batches_normalise_shuffle_and_upsample(tmp_path):
    make_image_folder(tmp_path / "ds", per_class=5)
    data = load_images(tmp_path / "ds", "train")
    xs, ys = zip(*batches(data, 4, train=False))
    assert sum(len(y) for y in ys) == 15 and ys[0].tolist() == [0, 0, 0, 0]
    shuffled = torch.cat([y for _, y in batches(data, 4, train=True, seed=1)])
    assert sorted(shuffled.tolist()) == sorted(data.labels.tolist())
    x, _ = next(batches(data, 2, image_size=64))
    assert x.shape == (2, 3, 64, 64)


def test_random_crop_flip_moves_pixels_but_keeps_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    # Every output pixel comes from the reflect-padded input.
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    assert set(out.unique().tolist()) <= set(padded.unique().tolist())


def test_parallel_decode_equals_serial_and_reports_bad_files(tmp_path, monkeypatch):
    import adaptive_resnet.data as data_module
    from adaptive_resnet.data import read_image_folder

    make_image_folder(tmp_path / "ds", per_class=5)
    serial = read_image_folder(tmp_path / "ds" / "train")
    monkeypatch.setattr(data_module, "PARALLEL_DECODE_MIN", 1)
    monkeypatch.setattr(data_module.os, "cpu_count", lambda: 2)
    parallel = read_image_folder(tmp_path / "ds" / "train")
    assert np.array_equal(serial.images, parallel.images) and np.array_equal(serial.labels, parallel.labels)
    (tmp_path / "ds" / "train" / "dog" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserInputError, match="cannot decode image .*bad.jpg"):
        read_image_folder(tmp_path / "ds" / "train")
