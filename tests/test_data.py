"""Tests for `tf_vqvae.data`: the three sources and the training pipeline."""

import dataclasses
import io
import json
import os
import pathlib
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tests.testing import TINY_MODEL_FLAGS
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


def _int_message(name, value, kind="a positive"):
    return (
        f"`{name}` must be {kind} integer. "
        f"Received: {name}={value!r} (of type {type(value).__name__})."
    )


@pytest.mark.parametrize("value", [0, -4, 2.5, "4", True, None])
def test_image_batch_sizes_must_be_positive_integers(value):
    images = _images(np.zeros((8, 2, 2, 1)))
    calls = {
        "global_batch_size": [
            lambda: data.training_pipeline(images, value, seed=0),
            lambda: images.steps_per_epoch(value),
        ],
        "batch_size": [lambda: data.evaluation_batches(images, value)],
        "count": [lambda: data.first_images(images, value)],
    }
    for name, functions in calls.items():
        for function in functions:
            with pytest.raises(ValueError) as info:
                function()
            assert str(info.value) == _int_message(name, value)


@pytest.mark.parametrize("seed", [None, -1, 1.5, "0"])
def test_image_pipeline_seed_must_be_a_non_negative_integer(seed):
    images = _images(np.zeros((8, 2, 2, 1)))
    with pytest.raises(ValueError) as info:
        data.training_pipeline(images, 4, seed=seed)
    assert str(info.value) == _int_message("seed", seed, "a non-negative")


def test_image_pipeline_takes_numpy_integers():
    images = _images(np.arange(8)[:, None, None, None])
    batches = data.training_pipeline(images, np.int64(4), seed=np.int32(3))
    plain = data.training_pipeline(images, 4, seed=3)
    assert [b.numpy().tolist() for b in batches] == [
        b.numpy().tolist() for b in plain
    ]
    assert images.steps_per_epoch(np.int64(3)) == 2
    assert data.first_images(images, np.int64(3)).shape == (3, 1, 1, 1)
    evaluation = data.evaluation_batches(images, np.int64(3))
    assert [len(b) for b in evaluation] == [3, 3, 2]


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
            "'tfds:cifar10'), 'folder:PATH', 'speech[:split]' or "
            "'audio-folder:PATH'. Received: dataset='imagenet'",
        ),
        (
            "tfds:",
            "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' (e.g. "
            "'tfds:cifar10'), 'folder:PATH', 'speech[:split]' or "
            "'audio-folder:PATH'. Received: dataset='tfds:'",
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


# ------------------------------------------------------- folder: bad files
@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory, monkeypatch):
    # The image-check cache goes under $XDG_CACHE_HOME: one per test.
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def _png_header_only(width, height):
    """A PNG whose header claims `width x height` RGB pixels, with a few
    bytes of pixel data: what a decompression bomb looks like before it is
    decoded."""

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _encoded(fmt, mode="RGB"):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), "uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def _half(content):
    return content[: len(content) // 2]


_BAD_FILES = {
    # id: (file name, content, reason)
    "empty": ("bad.png", b"", "empty file (0 bytes)"),
    "text-as-jpg": (
        "bad.jpg",
        b"hello world\n",
        "no known image format (its first bytes: b'hello world\\n')",
    ),
    "truncated-header": (
        "bad.jpg",
        _half(_encoded("JPEG")),
        "malformed header (OSError: Truncated File Read)",
    ),
    "truncated-png": (
        "bad.png",
        _half(_encoded("PNG")),
        "truncated or corrupt PNG data (Invalid PNG data, size "
        f"{len(_half(_encoded('PNG')))})",
    ),
    "truncated-jpeg": (
        "bad.jpg",
        _encoded("JPEG")[:-20],
        "truncated or corrupt JPEG data (jpeg::Uncompress failed. Invalid "
        "JPEG data or crop window.)",
    ),
    "tiff-as-png": (
        "bad.png",
        _encoded("TIFF"),
        "TIFF data, which TensorFlow cannot decode (Unknown image file "
        "format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.)",
    ),
    "bomb": (
        "bad.png",
        _png_header_only(100_000, 100_000),
        "too large: 10000000000 pixels, more than MAX_IMAGE_PIXELS = "
        "89478485 (a decompression bomb?)",
    ),
    "just-over-the-limit": (
        "bad.png",
        _png_header_only(10_000, 10_000),
        "too large: 10000x10000 = 100000000 pixels, more than "
        "MAX_IMAGE_PIXELS = 89478485 (a decompression bomb?)",
    ),
}


def _folder_with(root, bad_files):
    """3 good 8x8 RGB PNGs in `root/train/a`, plus `bad_files` (name ->
    content) in `root/train/b`; returns the bad files' paths."""
    _write_images(root, "train", "a", 3)
    os.makedirs(root / "train" / "b", exist_ok=True)
    paths = []
    for name, content in bad_files.items():
        path = root / "train" / "b" / name
        path.write_bytes(content)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("case", list(_BAD_FILES), ids=list(_BAD_FILES))
def test_bad_file_is_named_before_anything_runs(tmp_path, case):
    name, content, reason = _BAD_FILES[case]
    (path,) = _folder_with(tmp_path, {name: content})
    with pytest.raises(data.BadImageFileError) as info:
        data.load_images(f"folder:{tmp_path}")
    assert str(info.value) == (
        f"`dataset` file {path!r} is not a readable image: {reason}. Fix or "
        "remove it, or pass --skip-bad-files (skip_bad_files=True). "
        f"Received: dataset='folder:{tmp_path}'"
    )
    assert (info.value.path, info.value.reason) == (path, reason)
    assert isinstance(info.value, data.DatasetError)


def test_other_bad_files(tmp_path):
    _folder_with(tmp_path, {"cmyk.jpg": _encoded("JPEG", mode="CMYK")})
    (tmp_path / "train" / "b" / "folder.png").mkdir()
    with pytest.raises(data.BadImageFileError) as info:
        data.load_images(f"folder:{tmp_path}")
    cmyk = tmp_path / "train" / "b" / "cmyk.jpg"
    assert str(info.value) == (
        f"`dataset` images must be grayscale, RGB or RGBA; {cmyk} is CMYK. "
        "Convert it, or pass --skip-bad-files (skip_bad_files=True). "
        f"Received: dataset='folder:{tmp_path}'"
    )
    images = data.load_images(f"folder:{tmp_path}", skip_bad_files=True)
    assert images.num_examples == 3
    assert images.skipped == (
        (str(cmyk), "mode CMYK, not grayscale, RGB or RGBA"),
        (str(tmp_path / "train" / "b" / "folder.png"), "not a regular file"),
    )


def test_skip_bad_files_leaves_them_out_and_counts_them(tmp_path):
    bad = {case: _BAD_FILES[case] for case in ("empty", "text-as-jpg")}
    bad["truncated-png"] = _BAD_FILES["truncated-png"]
    paths = _folder_with(
        tmp_path,
        {
            f"{case}{os.path.splitext(name)[1]}": c
            for case, (name, c, _) in bad.items()
        },
    )
    dataset = f"folder:{tmp_path}"
    with pytest.raises(data.BadImageFileError) as info:
        data.load_images(dataset)
    assert str(info.value) == (
        f"`dataset` file {paths[0]!r} is not a readable image: empty file "
        "(0 bytes) (3 bad files in all). Fix or remove them, or pass "
        "--skip-bad-files (skip_bad_files=True). "
        f"Received: dataset={dataset!r}"
    )
    images = data.load_images(dataset, skip_bad_files=True)
    assert images.num_examples == 3
    assert images.skipped == tuple(
        (path, reason) for path, (_, _, reason) in zip(paths, bad.values())
    )
    assert images.skipped_summary() == (
        f"Skipped 3 bad image files of {dataset!r} split 'train' "
        f"(first: {paths[0]}: empty file (0 bytes))."
    )
    decoded = np.stack(list(images.dataset.as_numpy_iterator()))
    good = sorted((tmp_path / "train" / "a").iterdir())
    expected = [np.asarray(Image.open(path)) for path in good]
    assert sorted(map(bytes, decoded)) == sorted(map(bytes, expected))
    batches = list(data.training_pipeline(images, 3, seed=0, end_step=2))
    assert [batch.shape for batch in batches] == [(3, 8, 8, 3)] * 2
    one = dataclasses.replace(images, skipped=images.skipped[:1])
    assert one.skipped_summary() == (
        f"Skipped 1 bad image file of {dataset!r} split 'train' "
        f"(first: {paths[0]}: empty file (0 bytes))."
    )
    assert _images(np.zeros((2, 4, 4, 3))).skipped_summary() is None


def test_every_file_bad(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    path = tmp_path / "train" / "a" / "x.png"
    path.write_bytes(b"")
    (tmp_path / "train" / "a" / "y.png").write_bytes(b"")
    with pytest.raises(data.DatasetError) as info:
        data.load_images(f"folder:{tmp_path}", skip_bad_files=True)
    assert str(info.value) == (
        f"`dataset` folder {str(tmp_path)!r} has no readable images in "
        f"{tmp_path}/train/LABEL/: all 2 files are bad (first: {path}: "
        "empty file (0 bytes)). Fix or replace them. "
        f"Received: dataset='folder:{tmp_path}'"
    )


def test_folder_order_is_image_folders_and_skipping_keeps_it(tmp_path):
    _write_images(tmp_path, "train", "cats", 5)
    _write_images(tmp_path, "train", "dogs", 4, ext="jpg")
    builder = tfds.folder_dataset.ImageFolder(
        str(tmp_path), shape=(8, 8, 3), dtype=tf.uint8
    )
    expected = [
        example["image"]
        for example in builder.as_dataset(
            split="train", shuffle_files=False
        ).as_numpy_iterator()
    ]
    images = data.load_images(f"folder:{tmp_path}")
    ours = list(images.dataset.as_numpy_iterator())
    assert len(ours) == len(expected) == 9
    for mine, theirs in zip(ours, expected):
        np.testing.assert_array_equal(mine, theirs)
    # A skipped file leaves the others in the same order.
    emptied = tmp_path / "train" / "cats" / "cats-2.png"
    removed = np.asarray(Image.open(emptied))
    emptied.write_bytes(b"")
    skipped = data.load_images(f"folder:{tmp_path}", skip_bad_files=True)
    kept = list(skipped.dataset.as_numpy_iterator())
    survivors = [image for image in ours if not np.array_equal(image, removed)]
    assert len(kept) == len(survivors) == 8
    for mine, theirs in zip(kept, survivors):
        np.testing.assert_array_equal(mine, theirs)


def test_checks_are_cached(tmp_path, _own_cache_dir):
    (bad,) = _folder_with(tmp_path, {"bad.png": b""})
    files = sorted(str(p) for p in (tmp_path / "train").glob("*/*.png"))
    cache_file = data.image_check_cache_file(str(tmp_path / "train"))
    assert cache_file.startswith(str(_own_cache_dir))
    listing = sorted(str(p) for p in tmp_path.rglob("*"))

    first = data.check_image_files(files, cache_file)
    assert [check.cached for check in first] == [False] * 4
    assert [check.reason for check in first] == [None] * 3 + [
        "empty file (0 bytes)"
    ]
    assert first[0].shape == (8, 8, 3) and first[0].mode == "RGB"
    second = data.check_image_files(files, cache_file)
    assert [check.cached for check in second] == [True] * 4
    assert [
        dataclasses.replace(check, cached=False) for check in second
    ] == list(first)

    # A changed file is checked again; the others stay cached.
    Image.fromarray(np.zeros((8, 8), "uint8")).save(files[1])
    third = data.check_image_files(files, cache_file)
    assert [check.cached for check in third] == [True, False, True, True]
    assert (third[1].shape, third[1].mode) == ((8, 8, 1), "L")
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(files[1])

    # A corrupt cache is ignored and rewritten.
    with open(cache_file, "w") as file:
        file.write('{"validity": ')
    fourth = data.check_image_files(files, cache_file)
    assert [check.cached for check in fourth] == [False] * 4
    with open(cache_file) as file:
        assert set(json.load(file)["files"]) == {
            os.path.abspath(path) for path in files
        }
    assert not [
        name
        for name in os.listdir(os.path.dirname(cache_file))
        if name != os.path.basename(cache_file)
    ]
    # load_images uses the same cache; nothing is written to the dataset.
    data.load_images(f"folder:{tmp_path}", skip_bad_files=True)
    assert all(
        check.cached for check in data.check_image_files(files, cache_file)
    )
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing
    assert bad == files[-1]


def test_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    _write_images(tmp_path / "d", "train", "a", 2)
    images = data.load_images(f"folder:{tmp_path / 'd'}")
    assert images.num_examples == 2


def test_cli_train_refuses_a_bad_file_with_one_line(tmp_path, _own_cache_dir):
    (path,) = _folder_with(
        tmp_path / "d", {"bad.png": _BAD_FILES["truncated-png"][1]}
    )
    model_dir = tmp_path / "run"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "XDG_CACHE_HOME": str(_own_cache_dir),
    }
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "vqvae"),
            "train",
            "--dataset",
            f"folder:{tmp_path / 'd'}",
            "--model-dir",
            str(model_dir),
            "--epochs",
            "1",
            *TINY_MODEL_FLAGS,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    # Only the one line: TensorFlow's C++ start-up lines (absl's banner,
    # oneDNN, CUDA) are kept off the terminal (`training/startup.py`).
    assert result.stderr.splitlines() == [
        f"vqvae train: error: `dataset` file {path!r} is not a readable "
        f"image: {_BAD_FILES['truncated-png'][2]}. Fix or remove it, or pass "
        "--skip-bad-files (skip_bad_files=True). "
        f"Received: dataset='folder:{tmp_path / 'd'}'"
    ]
    assert not model_dir.exists()


# ------------------------------------------------------------------ labels
def test_folder_labels_follow_the_images(tmp_path):
    """Each image's label is its class folder, in load_images' order; a
    split is numbered by the training split's classes when asked."""
    _write_images(tmp_path, "train", "cats", 3)
    _write_images(tmp_path, "train", "dogs", 2)
    _write_images(tmp_path, "train", "eels", 2)
    _write_images(tmp_path, "test", "eels", 2)
    dataset = f"folder:{tmp_path}"
    labels = data.load_labels(dataset)
    assert labels.class_names == ("cats", "dogs", "eels")
    images = np.stack(list(data.load_images(dataset).dataset))
    for image, label in zip(images, labels.labels):
        folder = tmp_path / "train" / labels.class_names[label]
        assert any(
            np.array_equal(np.asarray(Image.open(path)), image)
            for path in folder.iterdir()
        )
    assert sorted(np.bincount(labels.labels)) == [2, 2, 3]

    test = data.load_labels(dataset, "test", class_names=labels.class_names)
    assert test.labels.tolist() == [2, 2]
    assert data.load_labels(dataset, "test").labels.tolist() == [0, 0]
    with pytest.raises(data.DatasetError) as info:
        data.load_labels(dataset, "test", class_names=("cats", "dogs"))
    assert str(info.value) == (
        f"`dataset` {dataset!r} split 'test' has classes that the model was "
        "not trained on: ['eels']; its classes are ['cats', 'dogs']. "
        f"Received: dataset={dataset!r}"
    )


def test_photo_labels_are_the_source_photographs():
    labels = data.load_labels("photos:test")
    assert labels.class_names == data.PHOTO_NAMES
    tiles = data.photo_tiles("test")
    assert labels.labels.shape == (len(tiles),)
    # Tiles come photo after photo: the labels never go back.
    assert np.all(np.diff(labels.labels) >= 0)
    from skimage import data as skimage_data

    first = labels.labels.tolist().index(3)
    rocket = skimage_data.rocket()[..., :3]
    windows = np.lib.stride_tricks.sliding_window_view(rocket, (32, 32, 3))[
        ::32, ::32, 0
    ]
    windows = windows.reshape(-1, 32, 32, 3)
    assert any(np.array_equal(tiles[first], w) for w in windows)


def test_tfds_labels_follow_the_images():
    with tfds.testing.mock_data(num_examples=12):
        labels = data.load_labels("tfds:cifar10")
        examples = list(
            tfds.load(
                "cifar10",
                split="train",
                shuffle_files=False,
                read_config=tfds.ReadConfig(
                    shuffle_seed=0, interleave_cycle_length=1
                ),
            )
        )
        images = list(data.load_images("tfds:cifar10").dataset)
        with pytest.raises(data.DatasetError) as info:
            data.load_labels("tfds:celeb_a")
    assert labels.labels.tolist() == [int(e["label"]) for e in examples]
    assert len(labels.class_names) == 10
    for image, example in zip(images, examples):
        np.testing.assert_array_equal(image, example["image"])
    assert str(info.value).startswith(
        "`dataset` 'celeb_a' has no class labels (no ClassLabel feature; "
    )
    assert str(info.value).endswith(
        "train an unconditional prior. Received: dataset='tfds:celeb_a'"
    )
