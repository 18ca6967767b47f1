"""One device vs two replicas of MirroredStrategy: identical training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import mirrored_strategy
from tests.testing import photo_patches
from tf_vqvae import VQVAE

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
        ("vq", {}),
        ("ema", {}),
        ("vq", {"data_init": "kmeans++", "dead_code_restart_steps": 2}),
        ("ema", {"data_init": "random", "dead_code_restart_steps": 2}),
    ],
    ids=["vq", "ema", "vq-init-restart", "ema-init-restart"],
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
    for w1, w2 in zip(one.weights, two.weights):
        np.testing.assert_allclose(
            np.asarray(w1), np.asarray(w2), atol=1e-5, err_msg=w1.path
        )
    # The codebook moved, so the comparison is not vacuous.
    index = [w.path for w in one.weights].index(one.quantizer.embeddings.path)
    assert not np.allclose(one.quantizer.embeddings, start[index])
    for key in ("loss", "reconstruction_loss", "vq_loss", "perplexity"):
        np.testing.assert_allclose(
            h1.history[key], h2.history[key], rtol=1e-4, err_msg=key
        )
