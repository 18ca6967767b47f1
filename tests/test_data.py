"""Tests for `tf_vqvae.data`: the three sources and the training pipeline."""

import os
import pathlib
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tf_vqvae import data

CIFAR10_JPEG = (
    pathlib.Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "cifar10_jpeg.tar.gz"
)


def _write_images(
    root, split, label, count, size=(8, 8), mode="RGB", ext="png"
):
    folder = os.path.join(root, split, label)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(len(os.listdir(folder)))
    channels = {"RGB": 3, "L": 1}[mode]
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], channels), "uint8")
        image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)
        image.save(os.path.join(folder, f"{label}-{i}.{ext}"))


def _images(array):
    array = np.asarray(array, "uint8")
    return data.Images(
        dataset=tf.data.Dataset.from_tensor_slices(array),
        num_examples=len(array),
        image_shape=array.shape[1:],
        name="test",
        split="train",
    )


# ------------------------------------------------------------------ photos
def test_photos_are_real_uint8_tiles_with_a_held_out_test_split():
    train = data.load_images("photos")
    test = data.load_images("photos:test")
    assert train.image_shape == (32, 32, 3)
    assert test.image_shape == (32, 32, 3)
    assert 3000 < train.num_examples < 5000
    assert 300 < test.num_examples < train.num_examples // 4
    tiles = np.stack(list(train.dataset.as_numpy_iterator()))
    assert tiles.dtype == np.uint8 and len(tiles) == train.num_examples
    assert tiles.std(axis=(1, 2, 3)).min() >= 2.0
    train_set = {tile.tobytes() for tile in tiles}
    test_tiles = data.photo_tiles("test")
    assert not any(tile.tobytes() in train_set for tile in test_tiles)
    np.testing.assert_array_equal(data.photo_tiles("train"), tiles)


def test_photos_unknown_split():
    with pytest.raises(data.DatasetError) as info:
        data.load_images("photos:validation")
    assert str(info.value) == (
        "The 'photos' dataset has splits 'train' and 'test'. "
        "Received: split='validation'"
    )


# -------------------------------------------------------------- pipeline
def test_pipeline_order_depends_only_on_seed_and_epoch():
    images = _images(np.arange(10)[:, None, None, None].repeat(2, 1))
    # 10 images, batch 3: 3 batches per epoch, one image dropped.
    assert images.steps_per_epoch(3) == 3

    def ids(dataset):
        return [batch[:, 0, 0, 0].numpy().tolist() for batch in dataset]

    full = ids(data.training_pipeline(images, 3, seed=7, end_step=9))
    assert len(full) == 9
    assert all(len(batch) == 3 for batch in full)
    for epoch in range(3):
        seen = sum(full[epoch * 3 : epoch * 3 + 3], [])
        assert len(set(seen)) == 9
    assert full[0:3] != full[3:6]  # reshuffled every epoch
    for start in (1, 3, 5, 8):
        resumed = data.training_pipeline(
            images, 3, seed=7, start_step=start, end_step=9
        )
        assert ids(resumed) == full[start:]
    assert ids(data.training_pipeline(images, 3, seed=7, end_step=9)) == full
    other = ids(data.training_pipeline(images, 3, seed=8, end_step=9))
    assert other != full
    # Default end: the end of the epoch that `start_step` is in.
    assert (
        ids(data.training_pipeline(images, 3, seed=7, start_step=4))
        == (full[4:6])
    )


def test_pipeline_batch_larger_than_split():
    images = _images(np.zeros((5, 4, 4, 3)))
    with pytest.raises(data.DatasetError) as info:
        data.training_pipeline(images, 8, seed=0)
    assert str(info.value) == (
        "`global_batch_size` must be at most the number of images in 'test' "
        "split 'train' (5). Received: global_batch_size=8"
    )


def test_pipeline_batches_are_uint8_and_model_ready():
    images = data.load_images("photos:test")
    batch = next(iter(data.training_pipeline(images, 16, seed=0)))
    assert batch.dtype == tf.uint8
    assert tuple(batch.shape) == (16, 32, 32, 3)


# -------------------------------------------------------------------- tfds
def test_tfds_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        images = data.load_images("tfds:mnist")
        assert images.image_shape == (28, 28, 1)
        assert images.num_examples == 12
        assert images.split == "train"
        batches = list(data.training_pipeline(images, 4, seed=1, end_step=6))
        again = list(data.training_pipeline(images, 4, seed=1, end_step=6))
        test = data.load_images("tfds:cifar10:test")
        assert test.image_shape == (32, 32, 3)
        assert test.split == "test"
    assert len(batches) == 6
    assert all(
        b.dtype == tf.uint8 and b.shape == (4, 28, 28, 1) for b in batches
    )
    for first, second in zip(batches, again):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "dataset, message",
    [
        (
            "tfds:no_such_dataset",
            "`dataset` names no TensorFlow Datasets dataset: "
            "'no_such_dataset' is unknown; use a name from "
            "`tfds.list_builders()`, e.g. 'tfds:cifar10'. "
            "Received: dataset='tfds:no_such_dataset'",
        ),
        (
            "imagenet",
            "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' (e.g. "
            "'tfds:cifar10') or 'folder:PATH'. Received: dataset='imagenet'",
        ),
        (
            "tfds:",
            "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' (e.g. "
            "'tfds:cifar10') or 'folder:PATH'. Received: dataset='tfds:'",
        ),
    ],
    ids=["unknown-tfds", "unknown-kind", "empty-name"],
)
def test_bad_dataset_names(dataset, message):
    with pytest.raises(data.DatasetError) as info:
        data.load_images(dataset)
    assert str(info.value) == message


def test_tfds_not_prepared(tmp_path):
    with pytest.raises(data.DatasetError) as info:
        data.load_images("tfds:mnist", data_dir=str(tmp_path))
    assert str(info.value) == (
        f"`dataset` 'mnist' is not prepared in {tmp_path}; run `tfds build "
        "mnist` on a machine with network access and pass its folder as "
        "--data-dir. Received: dataset='tfds:mnist'"
    )


# ------------------------------------------------------------------ folder
def test_folder_dataset(tmp_path):
    _write_images(tmp_path, "train", "cats", 3)
    _write_images(tmp_path, "train", "dogs", 2, ext="jpg")
    _write_images(tmp_path, "test", "cats", 1)
    images = data.load_images(f"folder:{tmp_path}")
    assert images.num_examples == 5
    assert images.image_shape == (8, 8, 3)
    decoded = np.stack(list(images.dataset.as_numpy_iterator()))
    assert decoded.shape == (5, 8, 8, 3) and decoded.dtype == np.uint8
    png = np.asarray(Image.open(tmp_path / "train" / "cats" / "cats-0.png"))
    assert any(np.array_equal(png, image) for image in decoded)
    again = np.stack(list(images.dataset.as_numpy_iterator()))
    np.testing.assert_array_equal(decoded, again)
    assert (
        data.load_images(f"folder:{tmp_path}", split="test").num_examples == 1
    )


def test_folder_grayscale(tmp_path):
    _write_images(tmp_path, "train", "a", 2, mode="L")
    images = data.load_images(f"folder:{tmp_path}")
    assert images.image_shape == (8, 8, 1)
    assert next(iter(images.dataset)).shape == (8, 8, 1)


def test_bad_folders(tmp_path):
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    sizes = tmp_path / "sizes"
    _write_images(sizes, "train", "a", 1, size=(8, 8))
    _write_images(sizes, "train", "b", 1, size=(8, 6))
    modes = tmp_path / "modes"
    _write_images(modes, "train", "a", 1, mode="L")
    _write_images(modes, "train", "b", 1, mode="RGB")
    missing = tmp_path / "missing"
    cases = [
        (
            empty,
            f"`dataset` folder {str(empty)!r} has no .jpg or .png images in "
            f"{empty}/train/LABEL/; lay it out as {empty}/train/LABEL/*.png. "
            f"Received: dataset='folder:{empty}'",
        ),
        (
            sizes,
            f"`dataset` images must all have one size; {sizes}/train/a/a-0.png "
            f"is 8x8 but {sizes}/train/b/b-0.png is 8x6. Resize them to one "
            f"size. Received: dataset='folder:{sizes}'",
        ),
        (
            modes,
            "`dataset` images must be all grayscale or all RGB; "
            f"{modes}/train/a/a-0.png has 1 channel(s) but "
            f"{modes}/train/b/b-0.png has 3. Convert them to one mode. "
            f"Received: dataset='folder:{modes}'",
        ),
        (
            missing,
            f"`dataset` folder {str(missing)!r} does not exist; give a folder "
            f"laid out as {missing}/train/LABEL/*.png. "
            f"Received: dataset='folder:{missing}'",
        ),
    ]
    for root, message in cases:
        with pytest.raises(data.DatasetError) as info:
            data.load_images(f"folder:{root}")
        assert str(info.value) == message


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10_JPEG.exists(), reason="no CIFAR-10 JPEGs")
def test_cifar10_jpeg_folder(tmp_path):
    with tarfile.open(CIFAR10_JPEG) as archive:
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / "cifar10_jpeg"
    train = data.load_images(f"folder:{root}")
    test = data.load_images(f"folder:{root}", split="test")
    assert train.image_shape == (32, 32, 3)
    assert (train.num_examples, test.num_examples) == (50000, 10000)
    batch = next(iter(data.training_pipeline(test, 64, seed=0)))
    assert batch.shape == (64, 32, 32, 3) and batch.dtype == tf.uint8
    assert 20 < float(tf.reduce_mean(tf.cast(batch, "float32"))) < 235
