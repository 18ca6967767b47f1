"""Tests for `tf_vqvae.priors` and `options.PRIOR_KINDS`: the prior kind
follows the code grid's rank, with the CLI's options of that kind; and the
input checks every kind shares (`tf_vqvae.autoregressive`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import PixelCNNPrior, WaveNetPrior, options, priors
from tf_vqvae.training.config import PriorConfig


def test_the_kind_follows_the_grid_rank():
    assert options.prior_kind_for_rank(2) == "pixelcnn"
    assert options.prior_kind_for_rank(1) == "wavenet"
    with pytest.raises(ValueError) as error:
        options.prior_kind_for_rank(3)
    assert str(error.value) == (
        "No prior models 3-D code grids (priors exist for ranks [1, 2]). "
        "Received: rank=3"
    )
    assert set(priors.PRIOR_CLASSES) == set(options.PRIOR_KINDS)


def test_make_prior_with_the_configs_options_of_each_kind():
    config = PriorConfig(
        num_hiddens=12,
        num_layers=3,
        kernel_size=5,
        residual_channels=6,
        skip_channels=10,
        dilation_cycle=2,
    )
    assert config.prior_kwargs("pixelcnn") == {
        "num_hiddens": 12,
        "num_layers": 3,
        "kernel_size": 5,
    }
    assert config.prior_kwargs("wavenet") == {
        "residual_channels": 6,
        "skip_channels": 10,
        "num_layers": 3,
        "dilation_cycle": 2,
    }
    image = priors.make_prior(
        16, (4, 4), num_classes=3, **config.prior_kwargs("pixelcnn")
    )
    assert isinstance(image, PixelCNNPrior)
    assert (image.grid_shape, image.num_classes) == ((4, 4), 3)
    assert (image.num_hiddens, image.num_layers, image.kernel_size) == (
        12,
        3,
        5,
    )
    sound = priors.make_prior(32, (20,), **config.prior_kwargs("wavenet"))
    assert isinstance(sound, WaveNetPrior)
    assert (sound.num_embeddings, sound.length, sound.num_classes) == (
        32,
        20,
        None,
    )
    assert sound.dilations == (1, 2, 1)
    assert (sound.residual_channels, sound.skip_channels) == (6, 10)


def test_make_prior_refuses_another_kinds_options():
    with pytest.raises(ValueError) as error:
        priors.make_prior(16, (8,), kernel_size=3)
    assert str(error.value) == (
        "`kernel_size` is not an argument of the 'wavenet' prior (its "
        "arguments: ['residual_channels', 'skip_channels', 'num_layers', "
        "'dilation_cycle']). Received: kernel_size=3"
    )
    with pytest.raises(ValueError) as error:
        WaveNetPrior.for_grid(16, (4, 4))
    assert str(error.value) == (
        "`grid_shape` must be (length,) for a WaveNetPrior. "
        "Received: grid_shape=(4, 4)"
    )


def test_make_prior_over_levels():
    prior = priors.make_prior(16, (4, 4), num_levels=3)
    assert isinstance(prior, PixelCNNPrior)
    assert (prior.grid_shape, prior.event_shape) == ((4, 4), (4, 4, 3))
    assert priors.make_prior(16, (4, 4), num_levels=1).num_levels == 1
    prior = priors.make_prior(16, (12,), num_levels=3, num_layers=2)
    assert isinstance(prior, WaveNetPrior)
    assert (prior.event_shape, prior.num_layers) == ((12, 3), 2)
    with pytest.raises(ValueError) as error:
        priors.make_prior(16, (12,), num_levels=True)
    assert str(error.value) == (
        "`num_levels` must be a positive integer. "
        "Received: num_levels=True (of type bool)."
    )


# ------------------------------------------------------------ input checks
# Per kind: a tiny prior's grid, a grid of the wrong size and its options.
KINDS = {
    "pixelcnn": ((3, 4), (5, 5), dict(num_hiddens=4, num_layers=1)),
    "wavenet": (
        (6,),
        (9,),
        dict(residual_channels=4, skip_channels=4, num_layers=2),
    ),
}
CODES_RANGE = "`codes` must be in [0, num_embeddings=5). Received: codes from"
LABELS_RANGE = "`labels` must be in [0, num_classes=3). Received: labels from"


def _prior(kind, num_classes=None):
    grid, _, kwargs = KINDS[kind]
    prior = priors.make_prior(5, grid, num_classes=num_classes, **kwargs)
    prior.compile(optimizer=keras.optimizers.SGD(0.1))
    return prior


def _fit(prior, x):
    return prior.fit(x, batch_size=4, epochs=1, verbose=0)


def _off_grid(prior, shape, batch="batch"):
    sizes = ", ".join(str(s) for s in prior.grid_shape)
    return (
        f"`{prior.name}` expects codes of shape ({batch}, {sizes}) "
        f"(grid_shape). Received: codes.shape={shape}"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_fit_refuses_codes_off_the_grid(kind):
    grid, wrong, _ = KINDS[kind]
    prior = _prior(kind)
    with pytest.raises(ValueError) as error:
        _fit(prior, np.zeros((4, *wrong), "int32"))
    assert str(error.value) == _off_grid(prior, (4, *wrong))
    # After a fit on another shape Keras retraces the step with unknown
    # sizes: the grid is then checked as the step runs.
    prior = _prior(kind)
    _fit(prior, np.zeros((4, *grid), "int32"))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _fit(prior, np.zeros((4, *wrong), "int32"))
    runtime_shape = " ".join(str(s) for s in (4, *wrong))
    assert (
        f"assertion failed: [{_off_grid(prior, '')}] [{runtime_shape}]"
        in error.value.message
    )


@pytest.mark.parametrize("kind", KINDS)
def test_fit_refuses_float_codes(kind):
    grid = KINDS[kind][0]
    with pytest.raises(TypeError) as error:
        _fit(_prior(kind), np.zeros((4, *grid), "float32"))
    # Keras adds its call context around errors from `call`.
    assert (
        "`codes` must be integer codes in [0, num_embeddings=5). "
        "Received: codes.dtype=float32"
    ) in str(error.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [5, -1])
def test_fit_refuses_codes_out_of_range(kind, bad):
    grid = KINDS[kind][0]
    codes = np.zeros((4, *grid), "int64")
    codes[1].flat[-1] = bad
    low, high = min(bad, 0), max(bad, 0)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _fit(_prior(kind), codes)
    assert (
        f"assertion failed: [{CODES_RANGE}] [{low}] [to] [{high}]"
        in error.value.message
    )


@pytest.mark.parametrize("kind", KINDS)
def test_calls_and_log_prob_check_the_codes(kind):
    grid, wrong, _ = KINDS[kind]
    prior = _prior(kind)
    dist = prior.distribution()
    codes = np.zeros((2, *grid), "int32")
    codes[0].flat[0] = 5
    for compute in (prior, dist.log_prob):
        with pytest.raises(ValueError) as error:
            compute(codes)
        assert f"{CODES_RANGE} 0 to 5." in str(error.value)
    with pytest.raises(ValueError) as error:
        dist.log_prob(np.zeros((1, *wrong), "int32"))
    assert str(error.value) == _off_grid(prior, (1, *wrong), batch="...")
    with pytest.raises(TypeError) as error:
        dist.log_prob(np.zeros((1, *grid)))
    assert str(error.value) == (
        "`codes` must be integer codes in [0, num_embeddings=5). "
        "Received: codes.dtype=float64"
    )
    # In a graph with unknown sizes, the same checks as it runs.
    log_prob = tf.function(
        dist.log_prob,
        input_signature=[tf.TensorSpec([None] * (1 + len(grid)), tf.int32)],
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        log_prob(np.zeros((1, *wrong), "int32"))
    runtime_shape = " ".join(str(s) for s in (1, *wrong))
    assert (
        f"assertion failed: [{_off_grid(prior, '', batch='...')}] "
        f"[{runtime_shape}]"
    ) in error.value.message
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        log_prob(codes)
    assert (
        f"assertion failed: [{CODES_RANGE}] [0] [to] [5]"
    ) in error.value.message
    np.testing.assert_allclose(
        log_prob(codes[1:]), dist.log_prob(codes[1:]), rtol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_class_labels_are_checked(kind):
    grid = KINDS[kind][0]
    prior = _prior(kind, num_classes=3)
    codes = np.zeros((2, *grid), "int32")
    for labels, error_type, message in [
        (np.array([0, 3]), ValueError, f"{LABELS_RANGE} 0 to 3."),
        (np.array([-1, 0]), ValueError, f"{LABELS_RANGE} -1 to 0."),
        (
            np.zeros((2, 1), "int32"),
            ValueError,
            "`labels` must have shape (batch,), one class id per code grid "
            "(batch=2). Received: labels.shape=(2, 1)",
        ),
        (
            np.zeros(3, "int32"),
            ValueError,
            "`labels` must have shape (batch,), one class id per code grid "
            "(batch=2). Received: labels.shape=(3,)",
        ),
        (
            np.zeros(2, "float32"),
            TypeError,
            "`labels` must be integer class ids in [0, num_classes=3). "
            "Received: labels.dtype=float32",
        ),
    ]:
        with pytest.raises(error_type) as error:
            prior({"codes": codes, "labels": labels})
        assert message in str(error.value)
        noise = tf.random.uniform((2, *grid, 5), seed=0)
        with pytest.raises(error_type) as error:
            prior.sample_codes(noise, labels)
        assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        prior.distribution(labels=[1, 3])
    assert str(error.value) == f"{LABELS_RANGE} 1 to 3."
    with pytest.raises(TypeError) as error:
        prior.distribution(labels=0.5)
    assert str(error.value) == (
        "`labels` must be integer class ids in [0, num_classes=3). "
        "Received: labels.dtype=float32"
    )
    # In `fit`, as the step runs.
    inputs = {
        "codes": np.zeros((4, *grid), "int32"),
        "labels": np.array([0, 1, 2, 3]),
    }
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _fit(prior, inputs)
    assert (
        f"assertion failed: [{LABELS_RANGE}] [0] [to] [3]"
        in error.value.message
    )


@pytest.mark.parametrize("kind", KINDS)
def test_labels_of_another_rank_after_a_retrace(kind):
    """Keras retraces `fit` on labels of another rank with an unknown rank:
    checked as the step runs (it failed inside the network before)."""
    grid = KINDS[kind][0]
    prior = _prior(kind, num_classes=3)
    codes = np.zeros((4, *grid), "int32")
    labels = np.array([0, 1, 2, 0], "int32")
    _fit(prior, {"codes": codes, "labels": labels})
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _fit(prior, {"codes": codes, "labels": labels[:, None]})
    assert (
        "assertion failed: [`labels` must have shape (batch,), one class id "
        "per code grid. Received: labels.shape=] [4 1] [batch=] [4]"
    ) in error.value.message


def test_a_conditional_prior_fits_under_mirrored_strategy():
    """Keras builds a model under a strategy from the replicas' mean of the
    first batch (int codes arrive as floats): the dtype check lets that
    symbolic call through, and training matches one device."""
    from tests.conftest import mirrored_strategy

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, (8, 3, 4)).astype("int32")
    labels = rng.integers(0, 3, 8).astype("int32")
    data = tf.data.Dataset.from_tensor_slices(
        ({"codes": codes, "labels": labels},)
    ).batch(4)
    losses = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy()):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        with strategy.scope():
            prior = priors.make_prior(
                5, (3, 4), num_classes=3, num_hiddens=4, num_layers=1
            )
            prior.compile(optimizer=keras.optimizers.SGD(0.1))
        history = prior.fit(data, epochs=2, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
