"""TensorBoard callbacks: a real `fit`, event files read back by TensorBoard."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.projector import projector_config_pb2

from tests.testing import TINY_QUANTIZER_OPTIONS, photo_patches
from tf_vqvae import VQVAE
from tf_vqvae.training import callbacks as tb
from tf_vqvae.visualize import image_grid, save_image_grid, side_by_side

TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
    num_downsamples=2,
)


def _accumulator(run_dir):
    acc = event_accumulator.EventAccumulator(
        run_dir, size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return acc


def _tensor_events(run_dir, tag):
    return _accumulator(run_dir).Tensors(tag)


def _plugin(run_dir, tag):
    acc = _accumulator(run_dir)
    return acc.SummaryMetadata(tag).plugin_data.plugin_name


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two epochs of a tiny VQ-VAE with every callback; a fake prior."""
    keras.backend.clear_session()
    log_dir = str(tmp_path_factory.mktemp("logs"))
    images = photo_patches(size=16, count=64, seed=0)
    fixed = images[:6]
    model = VQVAE(**TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    callbacks = tb.tensorboard_callbacks(log_dir, fixed)

    def sample_fn(num, seed):
        return tf.random.stateless_uniform(
            (num, 4, 4), seed=[seed, 0], maxval=16, dtype=tf.int32
        )

    callbacks.append(
        tb.PriorSamples(
            log_dir, sample_fn, model, num_samples=5, seed=3, ncols=3
        )
    )
    model.fit(
        images,
        validation_data=(images[:16],),
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=callbacks,
    )
    return log_dir, model, fixed


def test_every_tag_in_event_files(trained_run):
    log_dir, _, _ = trained_run
    images = _accumulator(os.path.join(log_dir, "images"))
    assert images.Tags()["tensors"] == ["reconstructions"]
    codebook = _accumulator(os.path.join(log_dir, "codebook"))
    assert sorted(codebook.Tags()["tensors"]) == [
        "code_usage",
        "codebook/batch_dead_codes",
        "codebook/batch_perplexity",
        "codebook/codebook_usage",
        "codebook/dead_codes",
        "codebook/epoch_codebook_usage",
        "codebook/epoch_perplexity",
        "codebook/perplexity",
        "codebook/val_codebook_usage",
        "codebook/val_dead_codes",
        "codebook/val_epoch_codebook_usage",
        "codebook/val_epoch_perplexity",
        "codebook/val_perplexity",
    ]
    samples = _accumulator(os.path.join(log_dir, "prior_samples"))
    assert samples.Tags()["tensors"] == ["prior_samples"]
    # keras.callbacks.TensorBoard: every metric as a scalar.
    train = _accumulator(os.path.join(log_dir, "train"))
    for tag in (
        "epoch_loss",
        "epoch_reconstruction_loss",
        "epoch_vq_loss",
        "epoch_perplexity",
        "epoch_epoch_perplexity",
        "epoch_dead_codes",
    ):
        assert tag in train.Tags()["tensors"], tag


def test_plugins_and_steps(trained_run):
    log_dir, _, _ = trained_run
    codebook = os.path.join(log_dir, "codebook")
    assert _plugin(codebook, "code_usage") == "histograms"
    assert _plugin(codebook, "codebook/dead_codes") == "scalars"
    assert _plugin(os.path.join(log_dir, "images"), "reconstructions") == (
        "images"
    )
    steps = [e.step for e in _tensor_events(codebook, "code_usage")]
    assert steps == [0, 1]


def test_reconstruction_image_matches_model(trained_run):
    log_dir, model, fixed = trained_run
    events = _tensor_events(os.path.join(log_dir, "images"), "reconstructions")
    assert [e.step for e in events] == [0, 1]
    # Image summaries hold [width, height, png...] as strings.
    proto = events[-1].tensor_proto
    width, height = (int(v) for v in proto.string_val[:2])
    png = tf.io.decode_png(proto.string_val[2]).numpy()
    assert png.shape == (height, width, 3)
    pairs = side_by_side(fixed, np.asarray(model(fixed, training=False)))
    np.testing.assert_array_equal(png, image_grid(pairs, ncols=8))
    # 6 pairs, 4 per row: 2 rows of 8 tiles of 16x16 with 1 pixel padding.
    assert png.shape == (2 * 17 + 1, 8 * 17 + 1, 3)
    np.testing.assert_array_equal(png[1:17, 1:17], fixed[0])


def test_code_usage_histogram_counts_codes(trained_run):
    log_dir, model, fixed = trained_run
    codebook = os.path.join(log_dir, "codebook")
    events = _tensor_events(codebook, "code_usage")
    buckets = tf.make_ndarray(events[-1].tensor_proto)
    codes = model.encode(fixed).numpy()
    expected = np.bincount(codes.ravel(), minlength=16)
    assert buckets.shape == (16, 3)
    np.testing.assert_array_equal(buckets[:, 0], np.arange(16))
    np.testing.assert_array_equal(buckets[:, 1], np.arange(1, 17))
    np.testing.assert_array_equal(buckets[:, 2], expected)
    assert buckets[:, 2].sum() == 6 * 4 * 4
    dead = _tensor_events(codebook, "codebook/batch_dead_codes")
    assert float(tf.make_ndarray(dead[-1].tensor_proto)) == float(
        np.sum(expected == 0)
    )


def test_logged_scalars_equal_history(trained_run):
    log_dir, model, _ = trained_run
    codebook = os.path.join(log_dir, "codebook")
    history = model.history.history
    for name in ("epoch_perplexity", "dead_codes", "val_perplexity"):
        events = _tensor_events(codebook, f"codebook/{name}")
        values = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
        np.testing.assert_allclose(values, history[name], rtol=1e-6)


def test_projector_config_and_checkpoint(trained_run):
    log_dir, model, fixed = trained_run
    run_dir = os.path.join(log_dir, "codebook")
    with open(os.path.join(run_dir, "projector_config.pbtxt")) as f:
        config = text_format.Parse(
            f.read(), projector_config_pb2.ProjectorConfig()
        )
    assert len(config.embeddings) == 1
    embedding = config.embeddings[0]
    assert embedding.tensor_name == "codebook/.ATTRIBUTES/VARIABLE_VALUE"
    assert embedding.metadata_path == "codebook_metadata.tsv"
    # TensorBoard's projector finds the latest checkpoint of the run dir.
    checkpoint = tf.train.latest_checkpoint(run_dir)
    assert checkpoint.endswith("codebook-1")
    reader = tf.train.load_checkpoint(checkpoint)
    np.testing.assert_array_equal(
        reader.get_tensor(embedding.tensor_name),
        np.asarray(model.quantizer.embeddings),
    )
    with open(os.path.join(run_dir, embedding.metadata_path)) as f:
        rows = f.read().splitlines()
    assert rows[0] == "code\tcount"
    assert len(rows) == 1 + 16
    counts = np.bincount(model.encode(fixed).numpy().ravel(), minlength=16)
    assert rows[1:] == [f"{k}\t{c}" for k, c in enumerate(counts)]
    assert not [n for n in os.listdir(run_dir) if ".tmp-" in n]


def test_projector_is_served_by_tensorboard_plugin(trained_run):
    from tensorboard.backend.event_processing import (
        plugin_event_multiplexer,
    )
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector import projector_plugin

    log_dir, model, _ = trained_run
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    context = base_plugin.TBContext(logdir=log_dir, multiplexer=multiplexer)
    plugin = projector_plugin.ProjectorPlugin(context)
    run_paths = {run: os.path.join(log_dir, run) for run in multiplexer.Runs()}
    configs = plugin._read_latest_config_files(list(run_paths.items()))[0]
    assert list(configs) == ["codebook"]
    config = configs["codebook"]
    assert config.model_checkpoint_path.endswith("codebook-1")
    reader = tf.train.load_checkpoint(config.model_checkpoint_path)
    tensor = reader.get_tensor(config.embeddings[0].tensor_name)
    assert tensor.shape == (16, 4)


def test_prior_samples_image(trained_run):
    log_dir, model, _ = trained_run
    events = _tensor_events(
        os.path.join(log_dir, "prior_samples"), "prior_samples"
    )
    png = tf.io.decode_png(events[-1].tensor_proto.string_val[2]).numpy()
    codes = tf.random.stateless_uniform(
        (5, 4, 4), seed=[3, 0], maxval=16, dtype=tf.int32
    )
    expected = image_grid(np.asarray(model.decode(codes)), ncols=3)
    np.testing.assert_array_equal(png, expected)


def test_prior_sample_fn_uses_distribution():
    class FakeDistribution:
        def sample(self, num, seed=None, labels=None):
            return tf.fill((num, 2, 2), seed + labels)

    class FakePrior:
        def distribution(self):
            return FakeDistribution()

    sample = tb.prior_sample_fn(FakePrior(), labels=1)
    codes = sample(3, 4)
    assert codes.dtype == tf.int32
    np.testing.assert_array_equal(codes, np.full((3, 2, 2), 5))


def test_image_grid_layout_and_png(tmp_path):
    images = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape(5, 2, 3, 1)
    grid = image_grid(images, ncols=2, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
    np.testing.assert_array_equal(grid[1:3, 5:8], images[1])
    np.testing.assert_array_equal(grid[7:9, 1:4], images[4])
    assert grid[7:9, 5:8].max() == 0
    floats = image_grid(np.full((1, 2, 2, 3), 0.5), padding=0)
    np.testing.assert_array_equal(floats, np.full((2, 2, 3), 128))
    path = tmp_path / "grid.png"
    written = save_image_grid(path, images, ncols=2)
    np.testing.assert_array_equal(
        tf.io.decode_png(path.read_bytes()).numpy(), written
    )
    assert os.listdir(tmp_path) == ["grid.png"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(images=np.zeros((0, 4, 4, 3))),
            "`images` must hold at least one image. "
            "Received: images.shape=(0, 4, 4, 3)",
        ),
        (
            dict(images=np.zeros((2, 4, 4, 2))),
            "`images` must have shape (batch, height, width, channels) with "
            "1, 3 or 4 channels. Received: images.shape=(2, 4, 4, 2)",
        ),
        (
            dict(images=np.zeros((2, 4, 4, 3)), ncols=0),
            "`ncols` must be a positive integer. "
            "Received: ncols=0 (of type int).",
        ),
    ],
    ids=["empty", "channels", "ncols"],
)
def test_image_grid_bad_input(kwargs, message):
    with pytest.raises(ValueError) as info:
        image_grid(**kwargs)
    assert str(info.value) == message


def test_callback_bad_arguments(tmp_path):
    with pytest.raises(ValueError) as info:
        tb.ReconstructionImages(str(tmp_path), np.zeros((4, 8, 8)))
    assert str(info.value) == (
        "`images` must be a non-empty batch of shape (batch, height, width, "
        "channels). Received: images.shape=(4, 8, 8)"
    )
    with pytest.raises(ValueError) as info:
        tb.CodeUsage(str(tmp_path), np.zeros((4, 8, 8, 3)), every_n_epochs=0)
    assert str(info.value) == (
        "`every_n_epochs` must be a positive integer. "
        "Received: every_n_epochs=0 (of type int)."
    )
    with pytest.raises(TypeError) as info:
        tb.PriorSamples(str(tmp_path), sample_fn=None, decode_fn=len)
    assert str(info.value) == (
        "`sample_fn` must be callable as sample_fn(num, seed). "
        "Received: sample_fn=None (of type NoneType)."
    )


@pytest.mark.parametrize(
    "quantizer", ["rvq", pytest.param("fsq", marks=pytest.mark.slow)]
)
def test_usage_per_level_and_projector_only_with_a_codebook(
    tmp_path, quantizer
):
    """`rvq`: one `code_usage/level_<i>` histogram per level beside the
    pooled one, per-level metrics as scalars, the projector with a row per
    code of each level; `fsq`: one histogram, the projector only if its
    `codebook()` is not `None`."""
    options = TINY_QUANTIZER_OPTIONS[quantizer]
    model = VQVAE(**TINY, quantizer=quantizer, quantizer_options=options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = photo_patches(size=16, count=16, seed=0)
    fixed = images[:4]
    log_dir = str(tmp_path)
    callbacks = tb.tensorboard_callbacks(log_dir, fixed)
    model.fit(images, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
    codebook_dir = os.path.join(log_dir, "codebook")
    codes = model.encode(fixed).numpy()
    levels = model.quantizer.num_levels
    per_level = codes.reshape(-1, levels)
    tags = _accumulator(codebook_dir).Tags()["tensors"]
    pooled = tf.make_ndarray(
        _tensor_events(codebook_dir, "code_usage")[-1].tensor_proto
    )
    np.testing.assert_array_equal(
        pooled[:, 2], np.bincount(per_level.ravel(), minlength=16)
    )
    level_tags = sorted(t for t in tags if t.startswith("code_usage/"))
    if levels == 1:
        assert level_tags == []
    else:
        assert level_tags == [f"code_usage/level_{i}" for i in range(levels)]
        for i in range(levels):
            event = _tensor_events(codebook_dir, f"code_usage/level_{i}")[-1]
            np.testing.assert_array_equal(
                tf.make_ndarray(event.tensor_proto)[:, 2],
                np.bincount(per_level[:, i], minlength=16),
            )
        history = model.history.history
        for name in (n for n in history if n.startswith("perplexity_")):
            assert f"codebook/{name}" in tags
    config = os.path.join(codebook_dir, "projector_config.pbtxt")
    if model.quantizer.codebook() is None:
        assert not os.path.exists(config)
    else:
        rows = int(model.quantizer.codebook().shape[0])
        metadata = os.path.join(codebook_dir, "codebook_metadata.tsv")
        with open(metadata) as f:
            assert len(f.read().splitlines()) == rows + 1
