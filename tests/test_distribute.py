"""One device vs two replicas of MirroredStrategy: identical training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import photo_patches
from tf_vqvae import VQVAE, VectorQuantizer
from tf_vqvae.distribute import mirrored_strategy as shared_strategy

TINY = dict(
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
)


def _train(strategy, quantizer, initial_weights, images, **kwargs):
    with strategy.scope():
        model = VQVAE(quantizer=quantizer, seed=5, **TINY, **kwargs)
        model.build((None, 16, 16, 3))
        if initial_weights is not None:
            model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(8)
    history = model.fit(dataset, epochs=2, verbose=0)
    return model, start, history


@pytest.mark.parametrize(
    "quantizer, kwargs",
    [
        ("vq", {"data_init": None, "dead_code_restart_steps": None}),
        ("ema", {}),
        ("vq", {"data_init": "kmeans++", "dead_code_restart_steps": 2}),
        ("ema", {"data_init": "random", "dead_code_restart_steps": 2}),
        # Data init (FSQ), its saturation penalty, entropy penalty (LFQ).
        ("fsq", {}),
        ("fsq", {"quantizer_options": {"fsq_saturation_penalty": 0.1}}),
        ("lfq", {}),
    ],
    ids=[
        "vq-paper",
        "ema-defaults",
        "vq-kmeans-restart",
        "ema-init-restart",
        "fsq-defaults",
        "fsq-saturation-penalty",
        "lfq-defaults",
    ],
)
def test_two_replicas_match_one_device(quantizer, kwargs):
    images = photo_patches(size=16, count=48, seed=1)
    one, start, h1 = _train(
        tf.distribute.get_strategy(), quantizer, None, images, **kwargs
    )
    two, _, h2 = _train(
        mirrored_strategy(),
        quantizer,
        start,
        images,
        **kwargs,
    )
    assert two.distribute_strategy.num_replicas_in_sync == 2
    # LFQ's default temperature (0.01) scales its entropy gradients by 400:
    # the all-reduced sums' other rounding order reaches 1.1e-5 (5e-5
    # relative) in one encoder weight after 12 steps.
    rtol = 1e-4 if quantizer == "lfq" else 1e-7
    for w1, w2 in zip(one.weights, two.weights):
        np.testing.assert_allclose(
            np.asarray(w1),
            np.asarray(w2),
            rtol=rtol,
            atol=1e-5,
            err_msg=w1.path,
        )
    # The quantizer's state (codebook, FSQ's affine; LFQ has none here: the
    # network's) moved, so the comparison is not vacuous.
    paths = [w.path for w in one.weights]
    state = [w for w in one.quantizer.weights if "float" in str(w.dtype)]
    assert any(
        not np.allclose(w, start[paths.index(w.path)])
        for w in state or one.trainable_weights
    )
    for key in ("loss", "reconstruction_loss", "vq_loss", "perplexity"):
        np.testing.assert_allclose(
            h1.history[key], h2.history[key], rtol=1e-4, err_msg=key
        )


@pytest.mark.parametrize(
    "data_init, expected", [("random", 16), ("kmeans++", 40)]
)
def test_restart_candidates_are_the_same_rows_on_two_replicas(
    data_init, expected
):
    flat = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")

    def make_layer():
        layer = VectorQuantizer(16, 4, data_init=data_init, seed=3)
        layer.build((None, 4))
        return layer

    one = make_layer()._candidate_rows(tf.constant(flat), None).numpy()
    # K rows (4 K, capped by the batch, for k-means++), distinct rows of
    # the batch.
    assert one.shape == (expected, 4)
    index = [int(np.flatnonzero((flat == row).all(1))[0]) for row in one]
    assert len(set(index)) == expected

    strategy = mirrored_strategy()
    with strategy.scope():
        layer = make_layer()
    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(flat[20 * ctx.replica_id_in_sync_group :][:20])
    )

    @tf.function
    def candidates(shard):
        context = tf.distribute.get_replica_context()
        return layer._candidate_rows(shard, context)

    result = strategy.run(candidates, args=(shards,))
    for rows in strategy.experimental_local_results(result):
        np.testing.assert_array_equal(rows.numpy(), one)


# ------------------------------------------------------- device name checks
MACHINE = "(/cpu:0, /cpu:1)"


@pytest.mark.parametrize(
    "devices", [["/gpu:7"], ["/cpu:9"], ["banana"], ["/cpu:0", "gpu0"]]
)
def test_mirrored_strategy_refuses_devices_the_machine_lacks(devices):
    with pytest.raises(ValueError) as info:
        shared_strategy(devices)
    assert str(info.value) == (
        f"`devices` must name devices of this machine {MACHINE}. "
        f"Received: devices={devices!r} (of type list)."
    )


def test_mirrored_strategy_refuses_a_device_named_twice():
    devices = ["/cpu:0", "/device:CPU:0"]
    with pytest.raises(ValueError) as info:
        shared_strategy(devices)
    assert str(info.value) == (
        "`devices` must name each device once. "
        f"Received: devices={devices!r} (of type list)."
    )


@pytest.mark.parametrize("devices", ["/cpu:0", [None], [0], 5])
def test_mirrored_strategy_refuses_what_is_no_list_of_names(devices):
    with pytest.raises(TypeError) as info:
        shared_strategy(devices)
    assert str(info.value) == (
        "`devices` must be a list of device names such as '/gpu:0', or "
        f"None. Received: devices={devices!r} (of type "
        f"{type(devices).__name__})."
    )


def test_mirrored_strategy_shares_one_strategy_per_device_set():
    two = mirrored_strategy()
    assert shared_strategy(("/device:CPU:1", "/cpu:0")) is two
    assert two.num_replicas_in_sync == 2
