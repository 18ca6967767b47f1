"""TensorBoard callbacks: a real `fit`, event files read back by TensorBoard."""

import json
import os
import re

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
        def sample(self, num, seed=None, top_k=None):
            return tf.fill((num, 2, 2), seed + top_k)

    class FakePrior:
        def distribution(self):
            return FakeDistribution()

    sample = tb.prior_sample_fn(FakePrior(), top_k=1)
    codes = sample(3, 4)
    assert codes.dtype == tf.int32
    np.testing.assert_array_equal(codes, np.full((3, 2, 2), 5))


def test_prior_sample_fn_draws_the_given_classes_in_turn():
    drawn = []

    class FakeDistribution:
        def __init__(self, labels):
            self.labels = labels

        def sample(self, seed=None):
            drawn.append(self.labels)
            return tf.zeros((len(self.labels), 2, 2), tf.int32)

    class FakePrior:
        num_classes = 5

        def distribution(self, labels):
            return FakeDistribution(labels)

    tb.prior_sample_fn(FakePrior())(7, 0)
    tb.prior_sample_fn(FakePrior(), labels=[4, 2])(5, 0)
    np.testing.assert_array_equal(drawn[0], [0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(drawn[1], [4, 2, 4, 2, 4])

    class Unconditional:
        num_classes = None

    with pytest.raises(ValueError, match="only for a model with `num_class"):
        tb.prior_sample_fn(Unconditional(), labels=[0])
    for labels in ([], [5], [-1], [1.5], [[1]]):
        with pytest.raises(ValueError, match=r"`labels` must be .*num_classes"):
            tb.prior_sample_fn(FakePrior(), labels=labels)


def test_prior_samples_rejects_speakers_the_decoder_lacks(tmp_path):
    class Decoder:
        num_speakers = 3

        def decode(self, codes, speaker=None):
            return codes

    with pytest.raises(ValueError, match=r"`speakers` .*num_speakers=3\)"):
        tb.PriorSamples(str(tmp_path), len, Decoder(), speakers=[0, 3])
    # A bound `decode` is its model's: same speakers.
    bound = tb.PriorSamples(str(tmp_path), len, Decoder().decode)
    assert bound.num_speakers == 3
    np.testing.assert_array_equal(bound.speakers, [0, 1, 2])

    class Plain:
        def decode(self, codes):
            return codes

    with pytest.raises(ValueError) as error:
        tb.PriorSamples(str(tmp_path), len, Plain(), speakers=[0])
    assert str(error.value) == (
        "`speakers` are only for a model with `num_speakers` set, and it "
        "has none. Received: speakers=[0]"
    )


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


# ------------------------------------------------------------ CodebookHealth
HEALTH_TINY = dict(
    num_embeddings=32,
    embedding_dim=8,
    num_hiddens=16,
    num_residual_hiddens=8,
    num_residual_blocks=1,
)
# Collapse: the paper's plain algorithm (random codebook, no restarts).
COLLAPSING = dict(data_init=None, dead_code_restart_steps=None)
HEALTHY = dict(data_init="kmeans++", dead_code_restart_steps=20)
_MESSAGE = re.compile(
    r"^CodebookHealth: epoch (\d+): codebook collapse: (\d+) of (\d+) codes "
    r"used(?: \([\d.]+% < \d+%\))?, (\d+) dead(?:, perplexity ([\d.e+]+) "
    r"\([\d.]+% of K < \d+%\))?; try (.*)\.$"
)


def _fit_with_health(model_kwargs, health, steps, lr=1e-3, epochs=1):
    from tf_vqvae.data import photo_tiles

    images = photo_tiles("train")[: 32 * steps]
    keras.utils.set_random_seed(0)
    model = VQVAE(**model_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    history = model.fit(
        images, batch_size=32, epochs=epochs, verbose=0, callbacks=[health]
    )
    return model, history


@pytest.mark.parametrize(
    "settings, collapses",
    [(COLLAPSING, True), (HEALTHY, False)],
    ids=["no-init-no-restarts-collapses", "kmeans++-restarts-healthy"],
)
def test_codebook_health_fires_on_collapse_only(settings, collapses, capsys):
    health = tb.CodebookHealth(on_collapse="stop")
    _, history = _fit_with_health(
        {**HEALTH_TINY, **settings}, health, steps=6, epochs=2
    )
    err = capsys.readouterr().err
    verdict = health.verdict
    assert verdict.healthy is not collapses
    if not collapses:
        assert err == ""
        assert len(history.history["loss"]) == 2
        assert health.stopped_epoch is None
        assert verdict.used_codes > 0.25 * 32
        assert verdict.perplexity > 0.05 * 32
        return
    # Fires within the first epoch, and "stop" stops there.
    assert health.stopped_epoch == 0
    assert len(history.history["loss"]) == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0] == verdict.message
    match = _MESSAGE.match(lines[0])
    assert match, lines[0]
    assert match.group(1) == "1"
    assert match.group(6) == (
        "--data-init kmeans++, --dead-code-restart-steps 100, a lower "
        "--learning-rate (now 0.001) or --quantizer fsq (no codebook to "
        "collapse)"
    )


def test_codebook_health_remedies_for_fsq():
    """FSQ has no codebook: its remedies are its own options and the
    learning rate, never an empty item."""
    fsq = VQVAE(**HEALTH_TINY, quantizer="fsq")
    assert tb.CodebookHealth._remedies(fsq) == (
        "--fsq-saturation-penalty 0.1 or a lower --learning-rate"
    )
    plain = VQVAE(
        **HEALTH_TINY,
        quantizer="fsq",
        quantizer_options={
            "fsq_data_init": False,
            "fsq_saturation_penalty": 0.1,
        },
    )
    plain.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert tb.CodebookHealth._remedies(plain) == (
        "--fsq-data-init or a lower --learning-rate (now 0.001)"
    )


@pytest.mark.slow
def test_codebook_health_quiet_on_the_demo_settings(capsys):
    from tf_vqvae.training.config import PRESETS

    config = PRESETS["demo"].train
    health = tb.CodebookHealth(on_collapse="stop")
    _fit_with_health(
        config.model_kwargs(), health, steps=30, lr=config.learning_rate
    )
    assert capsys.readouterr().err == ""
    assert health.verdict.healthy
    assert health.verdict.used_codes == config.num_embeddings


def _numpy_usage(codes, k):
    counts = np.bincount(codes.reshape(-1), minlength=k).astype("float64")
    p = counts / counts.sum()
    p = p[p > 0]
    return int(np.count_nonzero(counts)), float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize("replicas", [1, 2], ids=["1-replica", "2-replicas"])
def test_codebook_health_numbers_equal_a_numpy_recount(
    replicas, tmp_path, capsys
):
    """With a frozen model (learning rate 0, gradient codebook, no init or
    restarts) the epoch's codes are those of `encode` on the epoch's data."""
    from tests.conftest import mirrored_strategy

    images = photo_patches(size=16, count=64, seed=1)
    strategy = (
        mirrored_strategy() if replicas == 2 else tf.distribute.get_strategy()
    )
    with strategy.scope():
        model = VQVAE(**TINY, quantizer="vq", **COLLAPSING)
        model.compile(optimizer=keras.optimizers.Adam(0.0))
    # Thresholds of 1 make every epoch "collapse", so the line is printed.
    health = tb.CodebookHealth(
        min_usage=1.0,
        min_perplexity=1.0,
        log_dir=str(tmp_path / "logs"),
        summary_path=str(tmp_path / "health.json"),
    )
    # Two epochs (the counts restart each epoch) on one replica; one on two.
    epochs = 3 - replicas
    model.fit(
        images,
        batch_size=16,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[health],
    )
    used, perplexity = _numpy_usage(model.encode(images).numpy(), 16)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == epochs
    for epoch, line in enumerate(lines):
        match = _MESSAGE.match(line)
        assert match, line
        assert match.groups()[:5] == (
            str(epoch + 1),
            str(used),
            "16",
            str(16 - used),
            f"{perplexity:.3g}",
        )
        verdict = health.verdicts[epoch]
        assert (verdict.used_codes, verdict.dead_codes) == (used, 16 - used)
        np.testing.assert_allclose(verdict.perplexity, perplexity, rtol=1e-5)

    summary = json.loads((tmp_path / "health.json").read_text())
    assert summary["healthy"] is False
    assert summary["on_collapse"] == "warn"
    assert [e["epoch"] for e in summary["epochs"]] == list(range(epochs))
    assert summary["epochs"][-1]["used_codes"] == used
    assert summary["epochs"][-1]["message"] == lines[-1]
    codebook = os.path.join(tmp_path, "logs", "codebook")
    healthy = _tensor_events(codebook, "codebook/healthy")
    values = [float(tf.make_ndarray(e.tensor_proto)) for e in healthy]
    assert [e.step for e in healthy] == list(range(epochs))
    assert values == [0.0] * epochs
    assert _plugin(codebook, "codebook/health") == "text"
    text = _tensor_events(codebook, "codebook/health")[-1].tensor_proto
    assert text.string_val[0].decode() == lines[-1]


def test_codebook_health_counts_every_level_of_a_residual_quantizer(
    tmp_path, capsys
):
    """Residual VQ pools its levels' codebooks (`num_levels * K` codes): the
    verdict's numbers are a numpy recount of code `l * K + k` over levels."""
    images = photo_patches(size=16, count=32, seed=2)
    model = VQVAE(
        **TINY,
        quantizer="rvq",
        quantizer_options={"num_quantizers": 3, "rvq_quantizer": "vq"},
        **COLLAPSING,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.0))
    health = tb.CodebookHealth(min_usage=1.0, min_perplexity=1.0)
    model.fit(
        images,
        batch_size=16,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[health],
    )
    codes = model.encode(images).numpy()
    pooled = codes + 16 * np.arange(3)
    used, perplexity = _numpy_usage(pooled, 48)
    verdict = health.verdict
    assert verdict.num_embeddings == 48
    assert (verdict.used_codes, verdict.dead_codes) == (used, 48 - used)
    np.testing.assert_allclose(verdict.perplexity, perplexity, rtol=1e-5)
    match = _MESSAGE.match(capsys.readouterr().err.strip())
    assert match.groups()[1:4] == (str(used), "48", str(48 - used))


def test_codebook_health_keeps_earlier_epochs_of_a_resumed_run(tmp_path):
    path = tmp_path / "health.json"
    logs = {"epoch_codebook_usage": 0.5, "dead_codes": 8, "epoch_perplexity": 6}
    for epoch in (0, 1, 2):
        health = tb.CodebookHealth(summary_path=str(path), model=VQVAE(**TINY))
        health.set_model(health.vqvae)
        health.on_epoch_end(epoch, logs)
    summary = json.loads(path.read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [0, 1, 2]
    assert summary["healthy"] is True
    assert summary["epochs"][0] == {
        "epoch": 0,
        "num_embeddings": 16,
        "used_codes": 8,
        "dead_codes": 8,
        "perplexity": 6.0,
        "healthy": True,
        "message": "",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(on_collapse="halt"),
            "`on_collapse` must be 'warn' or 'stop'. Received: "
            "on_collapse='halt' (of type str).",
        ),
        (
            dict(min_usage=1.5),
            "`min_usage` must be a number in [0, 1] (a fraction of "
            "num_embeddings). Received: min_usage=1.5 (of type float).",
        ),
        (
            dict(min_perplexity="0.1"),
            "`min_perplexity` must be a number in [0, 1] (a fraction of "
            "num_embeddings). Received: min_perplexity='0.1' (of type str).",
        ),
    ],
    ids=["on_collapse", "min_usage", "min_perplexity"],
)
def test_codebook_health_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        tb.CodebookHealth(**kwargs)
    assert str(info.value) == message


def test_codebook_health_needs_the_epoch_metrics():
    health = tb.CodebookHealth(model=VQVAE(**TINY))
    with pytest.raises(ValueError) as info:
        health.on_epoch_end(0, {"loss": 1.0, "dead_codes": 3})
    assert str(info.value) == (
        "`CodebookHealth` needs the model's epoch codebook metrics "
        "['epoch_codebook_usage', 'dead_codes', 'epoch_perplexity'] (see "
        "tf_vqvae.metrics.CodebookUsage); the epoch's logs have none of "
        "['epoch_codebook_usage', 'epoch_perplexity']. Received: logs keys "
        "['dead_codes', 'loss']"
    )


def test_label_rows_names_each_row(tmp_path):
    from tf_vqvae.visualize import label_rows

    images = np.full((6, 16, 12, 3), 200, "uint8")
    grid = image_grid(images, ncols=3)  # 2 rows of 16-pixel tiles
    labeled = label_rows(grid, ["cat", "hubble_deep_field"], row_height=16)
    margin = labeled.shape[1] - grid.shape[1]
    assert labeled.shape[0] == grid.shape[0] and margin > 0
    np.testing.assert_array_equal(labeled[:, margin:], grid)
    text = labeled[:, :margin].max(axis=(1, 2))
    # Text inside each row's band, none on the padding lines between.
    assert text[1:17].max() > 0 and text[18:34].max() > 0
    assert text[0] == text[17] == text[34] == 0
    # The longer name needs more room.
    short = label_rows(grid, ["a", "b"], row_height=16)
    assert short.shape[1] < labeled.shape[1]
    written = save_image_grid(
        tmp_path / "rows.png", images, ncols=3, row_labels=["a", "b"]
    )
    np.testing.assert_array_equal(written, short)
    with pytest.raises(ValueError) as info:
        label_rows(grid, ["only one"], row_height=16)
    assert str(info.value) == (
        "`labels` must name each of the grid's 2 rows. Received: 1 labels"
    )


def test_code_patches_are_the_regions_of_that_code():
    from tf_vqvae.visualize import code_patches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 12, 3), "uint8")
    codes = rng.integers(0, 4, (3, 2, 3))
    patches, positions = code_patches(images, codes, 2, 4, 100, context=2)
    assert len(patches) == np.sum(codes == 2)
    assert patches.shape[1:] == (8, 8, 3)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for patch, (n, i, j) in zip(patches, positions):
        assert codes[n, i, j] == 2
        np.testing.assert_array_equal(
            patch, padded[n, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8]
        )
        np.testing.assert_array_equal(
            patch[2:6, 2:6], images[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
        )
    # At most `count`, spread over the occurrences (first and last kept).
    few, where = code_patches(images, codes, 2, 4, 2)
    assert few.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(where, positions[[0, -1]])
    none, _ = code_patches(images, codes, 7, 4, 5)
    assert none.shape == (0, 4, 4, 3)


def test_usage_plot_bars_follow_the_counts():
    from tf_vqvae.visualize import usage_plot

    counts = np.array([10, 0, 40, 20] + [5] * 60)
    plot = usage_plot(counts, width=640, height=240)
    assert plot.shape == (240, 640, 3) and plot.dtype == np.uint8
    bars = np.all(plot == (40, 90, 180), axis=-1)
    heights = bars.sum(axis=0)
    # 64 codes over the 584 plot columns (48 to 632): 9.125 columns each.
    centre = (48 + (np.arange(64) + 0.5) * (584 / 64)).astype(int)
    bar_heights = heights[centre]
    assert bar_heights[1] == 0 and bar_heights[2] == bar_heights.max()
    np.testing.assert_allclose(
        bar_heights / bar_heights[2], counts / 40, atol=1.5 / bar_heights[2]
    )
    # The dead code's red tick under the axis.
    assert np.any(np.all(plot[:, centre[1]] == (220, 40, 40), axis=-1))


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


# ------------------------------------------------- mistakes before training
AUDIO_TINY = dict(
    modality="audio",
    spatial_dims=1,
    num_downsamples=2,
    num_embeddings=8,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_hiddens=4,
    num_residual_blocks=1,
)


def _waves(batch=2, samples=64):
    t = np.arange(batch * samples, dtype=np.float32) / 5.0
    return (0.3 * np.sin(t)).reshape(batch, samples, 1)


def _fit_once(model, data, callbacks):
    """One step of `fit`; the callbacks' `on_train_begin` runs first."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(data, epochs=1, verbose=0, callbacks=callbacks)


def test_image_callbacks_refuse_an_audio_model_before_training(tmp_path):
    model = VQVAE(**AUDIO_TINY)
    images = photo_patches(size=16, count=2, seed=0)
    callbacks = tb.tensorboard_callbacks(str(tmp_path), images)
    with pytest.raises(ValueError) as info:
        _fit_once(model, tf.data.Dataset.from_tensors(_waves()), callbacks)
    assert str(info.value) == (
        "`ReconstructionImages` is for image models; the model is an audio "
        "model (modality='audio'): use `ReconstructionAudio` with waveforms "
        "(batch, samples, 1), or `tensorboard_callbacks` with them. "
        "Received: images.shape=(2, 16, 16, 3)"
    )
    assert not model.optimizer.iterations.numpy()
    with pytest.raises(ValueError) as info:
        tb.CodeUsage(str(tmp_path), images, model=model)
    assert str(info.value) == (
        "`CodeUsage` needs waveforms (batch, samples, 1) for an audio model "
        "(modality='audio'), and was given images (batch, height, width, "
        "channels). Received: images.shape=(2, 16, 16, 3)"
    )


def test_audio_callbacks_refuse_an_image_model_before_training(tmp_path):
    model = VQVAE(**TINY)
    images = photo_patches(size=16, count=4, seed=0)
    callbacks = tb.tensorboard_callbacks(str(tmp_path), _waves())
    with pytest.raises(ValueError) as info:
        _fit_once(model, tf.data.Dataset.from_tensors(images), callbacks)
    assert str(info.value) == (
        "`ReconstructionAudio` is for audio models; the model is an image "
        "model (modality='image'): use `ReconstructionImages` with images "
        "(batch, height, width, channels), or `tensorboard_callbacks` with "
        "them (one image: add the batch axis, images[None]). "
        "Received: waveforms.shape=(2, 64, 1)"
    )
    assert not model.optimizer.iterations.numpy()


def test_one_grayscale_image_is_not_taken_for_waveforms(tmp_path):
    image = photo_patches(size=16, count=1, seed=0)[0, ..., :1]
    with pytest.raises(TypeError) as info:
        tb.tensorboard_callbacks(str(tmp_path), image)
    assert str(info.value) == (
        "`images` of shape (batch, samples, 1) are waveforms and must be "
        "floating point in [-1, 1]; one image needs its batch axis "
        "(images[None]). Received: images.shape=(16, 16, 1), "
        "images.dtype=uint8"
    )
    # As floats it reads as 16 waveforms, until the model is known.
    model = VQVAE(**TINY)
    floats = image / 255.0
    with pytest.raises(ValueError) as info:
        tb.CodeUsage(str(tmp_path), floats, model=model)
    assert str(info.value) == (
        "`CodeUsage` needs images (batch, height, width, channels) for an "
        "image model (modality='image'), and was given waveforms (batch, "
        "samples, 1) (one image: add the batch axis, images[None]). "
        "Received: images.shape=(16, 16, 1)"
    )


@pytest.mark.parametrize(
    "speakers, message",
    [
        (
            None,
            "`speakers` must be given for a model conditioned on speakers "
            "(num_speakers=2): one id per waveform. Received: speakers=None",
        ),
        (
            [0, 1, 0],
            "`speakers` must hold one id per waveform (2). "
            "Received: speakers=[0, 1, 0]",
        ),
        (
            [0, 2],
            "`speakers` must be a non-empty sequence of ints in [0, "
            "num_speakers=2). Received: speakers=[0, 2]",
        ),
    ],
    ids=["missing", "count", "range"],
)
def test_audio_callbacks_check_the_speakers_before_training(
    tmp_path, speakers, message
):
    model = VQVAE(**AUDIO_TINY, num_speakers=2)
    callbacks = tb.tensorboard_callbacks(
        str(tmp_path), _waves(), speakers=speakers
    )
    data = tf.data.Dataset.from_tensors(
        {"audio": _waves(), "speaker": np.array([0, 1], "int32")}
    )
    with pytest.raises(ValueError) as info:
        _fit_once(model, data, callbacks)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        tb.ReconstructionAudio(str(tmp_path), _waves(), speakers, model=model)
    assert str(info.value) == message


def test_prior_samples_refuses_the_prior_in_place_of_its_sample_fn(tmp_path):
    from tf_vqvae import PixelCNNPrior

    prior = PixelCNNPrior(16, (4, 4), num_hiddens=8, num_layers=1)
    model = VQVAE(**TINY)
    with pytest.raises(TypeError) as info:
        tb.PriorSamples(str(tmp_path), prior, model)
    assert str(info.value) == (
        "`sample_fn` must be a function (num, seed) -> codes, such as "
        "prior_sample_fn(prior), not the prior itself. "
        f"Received: sample_fn={prior!r} (of type PixelCNNPrior)."
    )
    with pytest.raises(TypeError) as info:
        tb.PriorSamples(str(tmp_path), tb.prior_sample_fn(prior), prior)
    assert str(info.value) == (
        "`decode_fn` must be callable on codes, or a VQVAE. "
        f"Received: decode_fn={prior!r} (of type PixelCNNPrior)."
    )


def test_log_dirs_expand_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    images = photo_patches(size=16, count=2, seed=0)
    callbacks = tb.tensorboard_callbacks("~/logs", images)
    callbacks.append(
        tb.CodebookHealth(log_dir="~/logs", summary_path="~/health.json")
    )
    home = str(tmp_path / "home")
    assert callbacks[0].log_dir == os.path.join(home, "logs")
    for callback in callbacks[1:4]:
        assert callback.log_dir == os.path.join(home, "logs")
    assert callbacks[4].summary_path == os.path.join(home, "health.json")
    model = VQVAE(**TINY)
    model(images)
    callbacks[3].set_model(model)
    callbacks[3].write_projector(0)
    assert os.path.isfile(
        os.path.join(home, "logs", "codebook", "projector_config.pbtxt")
    )
    assert not os.path.exists(tmp_path / "~")
