"""`tf_vqvae.visualize`: what its functions refuse, and where they write."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import visualize


def _images(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 4, 4, 3)).astype("uint8")


RANGE = (
    "Images must be uint8 in [0, 255] or floating point in [0, 1]. "
    "Received: floating point images with values from {} to {} (divide "
    "8-bit images by 255, or pass them as uint8)."
)


@pytest.mark.parametrize(
    "scale, low, high",
    [(lambda x: x.astype("float32"), 0, 255), (lambda x: x / 127.5 - 1, -1, 1)],
    ids=["8-bit-as-float", "minus-one-to-one"],
)
def test_floats_in_another_scale_are_refused(scale, low, high):
    images = _images()
    images[0, 0, 0] = (0, 255, 0)
    floats = scale(images)
    for call in (
        visualize.to_uint8,
        visualize.image_grid,
        lambda x: visualize.side_by_side(images, x),
    ):
        with pytest.raises(ValueError) as info:
            call(floats)
        assert str(info.value) == RANGE.format(low, high)


def test_floats_in_unit_scale_are_rounded_and_an_overshoot_clipped():
    images = _images()
    np.testing.assert_array_equal(visualize.to_uint8(images / 255.0), images)
    # A decoder's mean a little outside [0, 1] (`likelihood="mse"`).
    mean = np.array([[-0.2, 0.5, 1.3, np.nan]])
    np.testing.assert_array_equal(visualize.to_uint8(mean), [[0, 128, 255, 0]])


def test_save_image_grid_refuses_a_directory_and_leaves_nothing(tmp_path):
    target = tmp_path / "grids"
    target.mkdir()
    with pytest.raises(ValueError) as info:
        visualize.save_image_grid(target, _images())
    assert str(info.value) == (
        "`path` must name a PNG file, not a directory. "
        f"Received: path={str(target)!r} (of type str)."
    )
    assert sorted(os.listdir(tmp_path)) == ["grids"]
    assert os.listdir(target) == []


def test_save_image_grid_removes_its_staging_file_when_writing_fails(
    tmp_path, monkeypatch
):
    # The rename fails after the PNG is staged (another writer made a
    # directory there meanwhile, a full disk, ...).
    def fail(*args, **kwargs):
        raise tf.errors.FailedPreconditionError(None, None, "rename failed")

    monkeypatch.setattr(tf.io.gfile, "rename", fail)
    with pytest.raises(tf.errors.FailedPreconditionError):
        visualize.save_image_grid(tmp_path / "grid.png", _images())
    assert os.listdir(tmp_path) == []


def test_save_image_grid_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    grid = visualize.save_image_grid("~/grid.png", _images(), ncols=2)
    assert os.listdir(tmp_path / "home") == ["grid.png"]
    assert not os.path.exists(tmp_path / "~")
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3)


@pytest.mark.parametrize(
    "counts, message",
    [
        (
            [],
            "`counts` must hold one count per code, at least one. "
            "Received: counts.shape=(0,).",
        ),
        (
            [-3, 1],
            "`counts` must be non-negative and finite. "
            "Received: counts from -3 to 1.",
        ),
    ],
    ids=["empty", "negative"],
)
def test_usage_plot_bad_counts(counts, message):
    with pytest.raises(ValueError) as info:
        visualize.usage_plot(np.array(counts))
    assert str(info.value) == message
