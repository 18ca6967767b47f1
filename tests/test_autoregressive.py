"""What every autoregressive prior shares (`tf_vqvae.autoregressive`):
saving, class conditioning, the `CodePrior` contract and sampling, run on
the PixelCNN and the WaveNet prior alike. Their networks are tested in
test_prior.py and test_wavenet.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_prior import TINY as TINY_PIXELCNN
from tests.test_wavenet import TINY as TINY_WAVENET
from tf_vqvae import sampling
from tf_vqvae.contracts import CodePrior, prior_event_shape
from tf_vqvae.export import tflite
from tf_vqvae.prior import PixelCNNPrior
from tf_vqvae.wavenet import WaveNetPrior

KINDS = {
    "pixelcnn": (PixelCNNPrior, TINY_PIXELCNN),
    "wavenet": (WaveNetPrior, TINY_WAVENET),
    # A prior over 3 levels of residual VQ codes per position.
    "pixelcnn-levels": (PixelCNNPrior, {**TINY_PIXELCNN, "num_levels": 3}),
    "wavenet-levels": (WaveNetPrior, {**TINY_WAVENET, "num_levels": 2}),
}


def _prior(kind, **kwargs):
    cls, tiny = KINDS[kind]
    return cls(**{**tiny, **kwargs})


def _codes(prior, n, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n,) + prior.event_shape
    return rng.integers(0, prior.num_embeddings, size=shape).astype("int32")


def _noise(n, prior, seed=0):
    shape = (n,) + prior.event_shape + (prior.num_embeddings,)
    return tf.random.stateless_uniform(shape, seed=(seed, 7))


def _inputs(codes, labels):
    return codes if labels is None else {"codes": codes, "labels": labels}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("num_classes", [None, 3], ids=["plain", "classes"])
def test_prior_save_and_reload(tmp_path, kind, num_classes):
    prior = _prior(kind, num_classes=num_classes)
    labels = None if num_classes is None else np.array([0, 2], "int32")
    inputs = _inputs(_codes(prior, 2), labels)
    logits = prior(inputs)
    config = prior.get_config()
    assert type(prior).from_config(config).get_config() == config
    path = os.path.join(tmp_path, "prior.keras")
    prior.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, type(prior))
    np.testing.assert_array_equal(restored(inputs), logits)
    assert len(restored.weights) == len(prior.weights)


@pytest.mark.parametrize("kind", list(KINDS))
def test_class_conditioning_changes_logits(kind):
    prior = _prior(kind, num_classes=3)
    codes = _codes(prior, 1)
    a = prior({"codes": codes, "labels": np.array([0], "int32")})
    b = prior({"codes": codes, "labels": np.array([1], "int32")})
    assert np.abs(a - b).max() > 0


_PIXELCNN_CODES = np.tile(np.arange(6, dtype="int32") % 7, (8, 5, 1))
_WAVENET_CODES = np.tile(np.arange(20, dtype="int32") % 7, (8, 1))
# Levels: level l holds the codes + 2 l (mod 7).
_LEVEL_CODES = (
    _PIXELCNN_CODES[..., None] + 2 * np.arange(3, dtype="int32")
) % 7


@pytest.mark.parametrize(
    "kind, kwargs, first, second, temperature",
    [
        ("pixelcnn", {}, _PIXELCNN_CODES, (_PIXELCNN_CODES + 3) % 7, 1.0),
        pytest.param(
            "pixelcnn-levels",
            {},
            _LEVEL_CODES,
            (_LEVEL_CODES + 3) % 7,
            1.0,
            marks=pytest.mark.slow,
        ),
        (
            "wavenet",
            {"length": 20},
            _WAVENET_CODES,
            (_WAVENET_CODES * 2) % 7,
            0.7,
        ),
    ],
    ids=["pixelcnn", "pixelcnn-levels", "wavenet-length20-tempered"],
)
def test_cached_sampler_equals_naive_after_training_with_labels(
    kind, kwargs, first, second, temperature
):
    # Trained weights give peaked logits, where a wrong window or tap would
    # show; the training data is a dict of codes and labels without targets.
    keras.utils.set_random_seed(0)
    prior = _prior(kind, num_classes=2, **kwargs)
    prior.compile(optimizer=keras.optimizers.Adam(3e-2))
    codes = np.concatenate([first, second])
    labels = (np.arange(16) >= 8).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"codes": codes, "labels": labels}
    ).batch(16)
    history = prior.fit(dataset, epochs=20, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    noise = _noise(4, prior, seed=2)
    sample_labels = np.array([0, 1, 0, 1], "int32")
    np.testing.assert_array_equal(
        prior.sample_codes(noise, sample_labels, temperature),
        prior.sample_codes(noise, sample_labels, temperature, method="naive"),
    )
    # Greedy decoding: every code is the argmax of its own conditional.
    greedy = prior.sample_codes(noise, sample_labels, top_k=1).numpy()
    logits = prior({"codes": greedy, "labels": sample_labels}).numpy()
    np.testing.assert_array_equal(greedy, logits.argmax(-1))


@pytest.mark.parametrize("kind", list(KINDS))
def test_sampling_is_a_function_of_the_noise(kind):
    prior = _prior(kind)
    a = prior.sample_codes(_noise(2, prior, seed=0))
    b = prior.sample_codes(_noise(2, prior, seed=0))
    c = prior.sample_codes(_noise(2, prior, seed=1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.numpy().min() >= 0 and a.numpy().max() < 7


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("num_classes", [None, 3], ids=["plain", "labels"])
def test_prior_satisfies_the_code_prior_contract(kind, num_classes):
    prior = _prior(kind, num_classes=num_classes)
    assert isinstance(prior, CodePrior)
    assert prior.num_embeddings == 7
    assert prior.grid_shape == ((12,) if kind.startswith("wavenet") else (5, 6))
    levels = KINDS[kind][1].get("num_levels", 1)
    assert prior.event_shape == prior.grid_shape + (
        (levels,) if levels > 1 else ()
    )
    assert prior_event_shape(prior) == prior.event_shape
    assert prior.num_classes == num_classes
    labels = None if num_classes is None else np.array([0, 2], "int32")
    # A seed's noise through the contract gives the distribution's codes.
    noise = sampling.prior_noise(prior, 2, 11)
    if labels is None:
        dist = prior.distribution()
        expected = dist.sample(2, seed=11)
    else:
        dist = prior.distribution(labels=labels)
        expected = dist.sample(seed=11)
    assert dist.event_shape == list(prior.event_shape)
    assert expected.shape == (2,) + prior.event_shape
    np.testing.assert_array_equal(prior.sample_codes(noise, labels), expected)


# The PixelCNN is traced with both samplers for a dynamic and a static batch
# size; the WaveNet's cached sampler (whose XLA compile costs seconds) for a
# static one.
_TRACED = [
    (kind, method, num_classes, batches)
    for kind, methods, batches in [
        ("pixelcnn", ("cached", "naive"), (None, 3)),
        ("wavenet", ("cached",), (3,)),
        ("pixelcnn-levels", ("cached",), (3,)),
    ]
    for method in methods
    for num_classes in (None, 3)
]


@pytest.mark.parametrize(
    "kind, method, num_classes, batches",
    _TRACED,
    ids=[
        f"{kind}-{method}-{'plain' if classes is None else 'labels'}"
        for kind, method, classes, _ in _TRACED
    ],
)
def test_sample_codes_traced_by_an_outer_function(
    kind, method, num_classes, batches
):
    # Inside another tf.function (as in export), the sampler's loop is part
    # of that graph, not a nested function call, and gives the eager codes.
    prior = _prior(kind, num_classes=num_classes)
    noise = _noise(3, prior, seed=3)
    labels = None if num_classes is None else np.array([2, 0, 1], "int32")
    eager = prior.sample_codes(noise, labels, top_k=5, method=method)

    def sample(noise, labels=None):
        return prior.sample_codes(noise, labels, top_k=5, method=method)

    for batch in batches:
        noise_shape = (batch,) + prior.event_shape + (prior.num_embeddings,)
        spec = [tf.TensorSpec(noise_shape, tf.float32)]
        if labels is not None:
            spec.append(tf.TensorSpec((batch,), tf.int32))
        traced = tf.function(sample, input_signature=spec)
        args = (noise,) if labels is None else (noise, labels)
        concrete = traced.get_concrete_function()
        op_types = {op.type for op in concrete.graph.get_operations()}
        assert "While" in op_types or "StatelessWhile" in op_types
        assert not op_types & {"PartitionedCall", "StatefulPartitionedCall"}
        codes = traced(*args)
        assert codes.shape == (3,) + prior.event_shape
        np.testing.assert_array_equal(codes, eager, err_msg=str(batch))


@pytest.mark.parametrize(
    "kind, num_classes",
    [
        ("pixelcnn", None),
        ("wavenet", 3),
        ("pixelcnn-levels", 3),
        ("wavenet-levels", None),
    ],
)
def test_cached_sampler_converts_to_tflite_builtins(
    tmp_path, kind, num_classes
):
    from ai_edge_litert.interpreter import Interpreter

    prior = _prior(kind, num_classes=num_classes)
    codes_shape = (None,) + prior.event_shape
    noise_spec = tf.TensorSpec(
        (2,) + prior.event_shape + (prior.num_embeddings,),
        tf.float32,
        name="noise",
    )
    archive = keras.export.ExportArchive()
    if num_classes is None:
        prior.build(codes_shape)
        archive.track(prior)
        archive.add_endpoint(
            "sample",
            lambda noise: {"codes": prior.sample_codes(noise, top_k=4)},
            input_signature=[noise_spec],
        )
    else:
        prior.build({"codes": codes_shape, "labels": (None,)})
        archive.track(prior)
        archive.add_endpoint(
            "sample",
            lambda noise, labels: {
                "codes": prior.sample_codes(noise, labels, top_k=4)
            },
            input_signature=[
                noise_spec,
                tf.TensorSpec((2,), tf.int32, name="labels"),
            ],
        )
    path = os.path.join(tmp_path, "sampler")
    archive.write_out(path, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        path, signature_keys=["sample"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model_path = os.path.join(tmp_path, "sampler.tflite")
    with open(model_path, "wb") as f:
        f.write(converter.convert())
    ops = tflite.op_names(model_path)
    assert "WHILE" in ops
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    runner = Interpreter(model_path=model_path).get_signature_runner("sample")
    noise = _noise(2, prior, seed=5)
    labels = None if num_classes is None else np.array([1, 2], "int32")
    inputs = {"noise": noise.numpy()}
    if labels is not None:
        inputs["labels"] = labels
    np.testing.assert_array_equal(
        runner(**inputs)["codes"], prior.sample_codes(noise, labels, top_k=4)
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_invalid_shared_arguments(kind):
    for kwargs, message in [
        (
            dict(num_embeddings=0),
            "`num_embeddings` must be a positive integer. "
            "Received: num_embeddings=0 (of type int).",
        ),
        (
            dict(num_classes=0),
            "`num_classes` must be a positive integer. "
            "Received: num_classes=0 (of type int).",
        ),
    ]:
        with pytest.raises(ValueError) as error:
            _prior(kind, **kwargs)
        assert str(error.value) == message
