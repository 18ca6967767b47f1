"""1D audio VQ-VAEs: mu-law likelihood, 64x downsampling, speaker
conditioning, training on the pipeline's dict batches, saving, bad input,
bits per sample and mixed precision."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import VQVAE, likelihoods
from tf_vqvae.evaluation import (
    bits_per_sample,
    evaluate_audio_model,
    reconstruction_bits_per_sample,
)
from tf_vqvae.speech_metrics import log_mel_distance

# The paper's audio encoder (six stride-2 window-4 convolutions), tiny.
TINY_AUDIO = dict(
    modality="audio",
    spatial_dims=1,
    num_downsamples=6,
    num_embeddings=16,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
)
SAMPLES = 512


def chirp(batch=4, samples=SAMPLES, seed=0) -> np.ndarray:
    """Chirps of random start phase, 200 Hz rising to 2 kHz at 16 kHz,
    amplitude 0.6: `(batch, samples, 1)` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    frequency = 200.0 + 1800.0 * t / t[-1]
    phase = 2 * np.pi * np.cumsum(frequency) / 16000.0
    start = rng.uniform(0, 2 * np.pi, size=(batch, 1))
    return (0.6 * np.sin(phase + start))[..., None].astype("float32")


def np_mu_law_encode(x):
    y = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    return np.clip(np.floor((y + 1) * 128), 0, 255).astype(np.int64)


def np_mu_law_decode(q):
    y = (2 * q + 1) / 256 - 1
    return np.sign(y) * (256.0 ** np.abs(y) - 1) / 255


def np_log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# ------------------------------------------------------------ likelihood
def test_mu_law_matches_numpy():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.uniform(-1, 1, 500), rng.normal(0, 0.02, 500), [-1, 0, 1]]
    )
    classes = likelihoods.mu_law_encode(x.astype("float32"))
    assert classes.dtype == tf.int32
    np.testing.assert_array_equal(classes, np_mu_law_encode(x))
    assert int(tf.reduce_min(classes)) == 0
    assert int(tf.reduce_max(classes)) == 255
    every = np.arange(256)
    np.testing.assert_allclose(
        likelihoods.mu_law_decode(every), np_mu_law_decode(every), atol=1e-6
    )
    # Bin centres encode to their own class.
    np.testing.assert_array_equal(
        likelihoods.mu_law_encode(likelihoods.mu_law_decode(every)), every
    )

    logits = rng.normal(0, 3, size=(2, 7, 256))
    waves = rng.uniform(-1, 1, size=(2, 7))
    log_prob = likelihoods.mu_law_log_prob(waves, logits.astype("float32"))
    expected = np.take_along_axis(
        np_log_softmax(logits), np_mu_law_encode(waves)[..., None], -1
    )[..., 0]
    assert log_prob.dtype == tf.float32
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)
    probs = np.exp(np_log_softmax(logits))
    np.testing.assert_allclose(
        likelihoods.mu_law_mean(logits),
        (probs * np_mu_law_decode(every)).sum(-1),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        likelihoods.mu_law_mode(logits),
        np_mu_law_decode(logits.argmax(-1)),
        atol=1e-6,
    )


def test_mu_law_agrees_with_the_numpy_audio_module():
    """The model's TF mu-law and the data side's numpy one
    (`tf_vqvae.audio`) give the same classes and bin centres."""
    audio = pytest.importorskip("tf_vqvae.audio")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-1, 1, 5000), rng.normal(0, 0.01, 5000)])
    x = x.astype("float32")
    np.testing.assert_array_equal(
        likelihoods.mu_law_encode(x), audio.mu_law_encode(x)
    )
    every = np.arange(256)
    np.testing.assert_allclose(
        likelihoods.mu_law_decode(every), audio.mu_law_decode(every), atol=1e-6
    )


def np_logistic_mixture_probs(params, num_mixtures):
    """The 256 class probabilities of a discretized logistic mixture over
    the grid `q / 255` (edge bins open), from `split_logistic_params`
    outputs `(..., 3 M)` (`(..., 2)` for M = 1): float64 `(..., 256)`."""
    params = np.asarray(params, "float64")
    if num_mixtures == 1:
        logits = np.zeros(params.shape[:-1] + (1,))
        locs, log_scales = params[..., :1], params[..., 1:]
    else:
        logits, locs, log_scales = np.split(params, 3, axis=-1)
    locs = locs + 0.5
    scales = np.exp(np.maximum(log_scales, -7.0))
    grid = np.arange(256) / 255.0
    upper = np.where(grid < 1, grid + 0.5 / 255, np.inf)
    lower = np.where(grid > 0, grid - 0.5 / 255, -np.inf)

    def cdf(edge):
        t = (edge - locs[..., None]) / scales[..., None]
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-t))

    per_component = cdf(upper) - cdf(lower)  # (..., M, 256)
    weights = np.exp(np_log_softmax(logits))
    return (weights[..., None] * per_component).sum(-2)


def np_logistic_mixture_mean(params, num_mixtures):
    """The mixture's mean on the class grid, expanded from mu-law."""
    params = np.asarray(params, "float64")
    if num_mixtures == 1:
        grid = np.clip(params[..., 0] + 0.5, 0, 1)
    else:
        logits, locs, _ = np.split(params, 3, axis=-1)
        weights = np.exp(np_log_softmax(logits))
        grid = np.clip((weights * (locs + 0.5)).sum(-1), 0, 1)
    return np_mu_law_decode(grid * 255)


def random_mixture_params(shape, num_mixtures, seed=0):
    rng = np.random.default_rng(seed)
    width = 2 if num_mixtures == 1 else 3 * num_mixtures
    params = rng.uniform(-0.6, 0.6, size=shape + (width,))
    # Log scales from e^-8 (clipped to e^-7: one bin) to e^0 (wide).
    scales = slice(1, 2) if num_mixtures == 1 else slice(2 * num_mixtures, None)
    params[..., scales] = rng.uniform(-8.0, 0.0, size=shape + (num_mixtures,))
    return params.astype("float32")


@pytest.mark.parametrize("num_mixtures", [1, 4])
def test_mu_law_logistic_matches_numpy(num_mixtures):
    params = random_mixture_params((3, 7), num_mixtures)
    waves = np.random.default_rng(1).uniform(-1, 1, (3, 7)).astype("float32")
    waves[0, :3] = [-1.0, 1.0, 0.0]  # the two open edge bins and the middle
    # The rest near a component's location, where the mass is.
    first_loc = params[1:, :, 0 if num_mixtures == 1 else num_mixtures]
    near = np.round((first_loc + 0.5) * 255) + np.arange(-3, 4)
    waves[1:] = np_mu_law_decode(np.clip(near, 0, 255))
    expected = np_logistic_mixture_probs(params, num_mixtures)
    np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-12)
    probs = likelihoods.mu_law_logistic_probs(params, num_mixtures)
    assert probs.dtype == tf.float32 and tuple(probs.shape) == (3, 7, 256)
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    # float32 locations and scales down to e^-7 (a bin's width).
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    log_prob = likelihoods.mu_law_logistic_log_prob(waves, params, num_mixtures)
    picked = np.take_along_axis(
        expected, np_mu_law_encode(waves)[..., None], -1
    )[..., 0]
    # Only where numpy's float64 difference of CDFs does not cancel.
    usable = picked > 1e-10
    assert usable.sum() > 10
    np.testing.assert_allclose(
        np.asarray(log_prob)[usable], np.log(picked[usable]), rtol=1e-4
    )
    np.testing.assert_array_equal(
        likelihoods.audio_log_prob("mu_law_logistic", waves, params),
        log_prob,
    )
    np.testing.assert_allclose(
        likelihoods.mu_law_logistic_mean(params, num_mixtures),
        np_logistic_mixture_mean(params, num_mixtures),
        atol=1e-5,
    )


def test_mu_law_logistic_is_finite_far_from_the_mean():
    """Mass hundreds of scales away from a narrow component: log space,
    no cancellation, no NaN (the pixel likelihood's machinery)."""
    params = np.array([[-0.5, -7.0], [0.5, -7.0]], "float32")  # M = 1
    waves = np.array([1.0, -1.0], "float32")
    log_prob = likelihoods.mu_law_logistic_log_prob(waves, params, 1)
    assert np.all(np.isfinite(log_prob)) and np.all(np.asarray(log_prob) < -100)


def test_mu_law_compress_matches_numpy_and_quantizes_to_the_classes():
    x = np.linspace(-1, 1, 1001).astype("float32")
    expected = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    np.testing.assert_allclose(
        likelihoods.mu_law_compress(x), expected, atol=1e-6
    )
    np.testing.assert_array_equal(
        likelihoods.mu_law_encode(x), np_mu_law_encode(x)
    )
    every = np.arange(256)
    np.testing.assert_allclose(
        likelihoods.mu_law_expand(every / 255),
        np_mu_law_decode(every),
        atol=1e-6,
    )


# ----------------------------------------------------------------- model
@pytest.mark.parametrize("num_speakers", [None, 3], ids=["plain", "speakers"])
def test_shapes_and_64x_downsampling(num_speakers):
    model = VQVAE(num_speakers=num_speakers, **TINY_AUDIO)
    assert model.likelihood == "mu_law"
    waves = chirp(batch=3, samples=1024)
    speaker = np.array([0, 2, 1], "int32") if num_speakers else None
    inputs = waves if speaker is None else {"audio": waves, "speaker": speaker}
    outputs = model(inputs, training=False)
    assert outputs.dtype == tf.float32 and tuple(outputs.shape) == (3, 1024, 1)
    assert model.example_shape == (1024, 1)
    assert model.downsampling_factor == 64
    assert model.code_shape((1024, 1)) == (16,)
    codes = model.encode(waves)
    assert codes.dtype == tf.int32 and tuple(codes.shape) == (3, 16)
    np.testing.assert_array_equal(model.encode(inputs), codes)
    logits = model.decoder_outputs(codes, speaker)
    assert logits.dtype == tf.float32 and tuple(logits.shape) == (3, 1024, 256)
    decoded = model.decode(codes, speaker)
    np.testing.assert_array_equal(decoded, outputs)
    assert np.all(np.abs(decoded) <= 1.0)
    # The loss is the mean NLL in nats per sample (numpy reference).
    loss = float(tf.add_n(model.losses) - tf.add_n(model.quantizer.losses))
    expected = -np.take_along_axis(
        np_log_softmax(np.asarray(logits, "float64")),
        np_mu_law_encode(waves[..., 0])[..., None],
        -1,
    ).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_fit_on_dict_batches_decreases_the_loss():
    keras.utils.set_random_seed(0)
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=8)
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            {"audio": waves, "speaker": np.arange(8, dtype="int32") % 2}
        )
        .batch(4)
        .repeat(6)
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(dataset, epochs=4, verbose=0).history
    for name in ("loss", "reconstruction_loss", "vq_loss", "perplexity"):
        assert name in history
    reconstruction = history["reconstruction_loss"]
    # log(256) = 5.55 nats is a uniform categorical.
    assert reconstruction[0] < 5.6
    assert reconstruction[-1] < reconstruction[0] - 1.0, reconstruction


def test_an_unconditioned_model_takes_the_pipeline_dicts():
    model = VQVAE(**TINY_AUDIO)
    waves = chirp(batch=2)
    batch = {"audio": waves, "speaker": np.array([5, 7], "int32")}
    np.testing.assert_array_equal(model(batch), model(waves))
    np.testing.assert_array_equal(model.encode(batch), model.encode(waves))


def test_speaker_embedding_changes_the_output_and_learns():
    keras.utils.set_random_seed(0)
    model = VQVAE(num_speakers=3, **TINY_AUDIO)
    waves = chirp(batch=2)
    model({"audio": waves, "speaker": np.array([0, 0], "int32")})
    # Random embeddings as trained ones would be (Keras starts them near 0).
    for variable in model.decoder.trainable_variables:
        if "speaker" in variable.path:
            variable.assign(
                np.random.default_rng(1).normal(size=variable.shape)
            )
    codes = model.encode(waves)
    as_0 = model.decoder_outputs(codes, speaker=[0, 0])
    as_1 = model.decoder_outputs(codes, speaker=[1, 1])
    assert float(tf.reduce_max(tf.abs(as_0 - as_1))) > 1e-3
    np.testing.assert_array_equal(
        model.decoder_outputs(codes, speaker=[0, 1])[0], as_0[0]
    )

    embeddings = [v for v in model.trainable_variables if "speaker" in v.path]
    # The 3-wide conv, one residual block, five hidden upsamplings.
    assert len(embeddings) == 1 + 1 + 5
    with tf.GradientTape() as tape:
        model({"audio": waves, "speaker": np.array([0, 2], "int32")})
        loss = tf.add_n(model.losses)
    for gradient in tape.gradient(loss, embeddings):
        rows = np.abs(np.asarray(tf.convert_to_tensor(gradient))).sum(-1)
        assert rows[0] > 0 and rows[2] > 0 and rows[1] == 0


@pytest.mark.parametrize("num_speakers", [None, 2], ids=["plain", "speakers"])
def test_keras_round_trip_gives_identical_outputs(num_speakers, tmp_path):
    model = VQVAE(num_speakers=num_speakers, **TINY_AUDIO)
    waves = chirp(batch=2)
    speaker = None if num_speakers is None else np.array([1, 0], "int32")
    inputs = waves if speaker is None else {"audio": waves, "speaker": speaker}
    if num_speakers is None:
        # The pipeline's dicts; an unconditioned model ignores "speaker".
        model.compile(optimizer="adam")
        batch = {"audio": waves, "speaker": np.array([3, 4], "int32")}
        model.fit(batch, batch_size=2, epochs=1, verbose=0)
    else:
        model(inputs)
    config = model.get_config()
    assert config["modality"] == "audio"
    assert config["num_speakers"] == num_speakers
    assert config["likelihood"] == "mu_law"
    assert config["example_shape"] == [SAMPLES, 1]
    path = str(tmp_path / "audio.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.modality == "audio" and loaded.num_speakers == num_speakers
    np.testing.assert_array_equal(loaded(inputs), model(inputs))
    codes = model.encode(waves)
    np.testing.assert_array_equal(loaded.encode(waves), codes)
    np.testing.assert_array_equal(
        loaded.decoder_outputs(codes, speaker),
        model.decoder_outputs(codes, speaker),
    )
    for saved, restored in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(saved, restored)


def test_bad_inputs_have_clear_messages():
    model = VQVAE(num_speakers=2, name="vqvae", **TINY_AUDIO)
    waves = chirp(batch=2)
    ids = np.array([0, 1], "int32")
    model({"audio": waves, "speaker": ids})
    plain = VQVAE(name="plain", **TINY_AUDIO)
    plain(waves)
    codes = np.zeros((2, 8), "int32")
    cases = [
        (
            lambda: model({"audio": waves[..., 0], "speaker": ids}),
            ValueError,
            "`vqvae` was built for inputs of rank 3 with 1 channels, e.g. "
            "(None, 16384, 1). Received: inputs.shape=(2, 512)",
        ),
        (
            lambda: VQVAE(**TINY_AUDIO)(waves[..., 0]),
            ValueError,
            "VQVAE(spatial_dims=1) expects inputs of rank 3 with a known "
            "channel axis, e.g. (None, 16384, 1). "
            "Received: inputs.shape=(2, 512)",
        ),
        (
            lambda: VQVAE(**TINY_AUDIO)(np.zeros((2, 512, 2), "float32")),
            ValueError,
            "Audio models take mono waveforms (batch, samples, 1). "
            "Received: inputs.shape=(2, 512, 2)",
        ),
        (
            lambda: model({"audio": waves * 2, "speaker": ids}),
            ValueError,
            "Waveforms must be floating point in [-1, 1]. Received: values "
            f"from {float(waves.min() * 2):g} to {float(waves.max() * 2):g} "
            "(divide 16-bit PCM by 32768).",
        ),
        (
            lambda: plain.encode(waves[:, :100]),
            ValueError,
            "`plain` needs sample counts that are multiples of "
            f"downsampling_factor={plain.downsampling_factor} "
            "(2**num_downsamples), e.g. (None, 16384, 1). "
            "Received: inputs.shape=(2, 100, 1)",
        ),
        (
            lambda: plain((waves * 32767).astype("int16")),
            TypeError,
            "Waveforms must be floating point in [-1, 1]. "
            "Received: waveforms.dtype=int16",
        ),
        (
            lambda: model({"audio": waves, "speaker": np.array([0, 2])}),
            ValueError,
            "`speaker` ids must be in [0, num_speakers=2). "
            "Received: ids from 0 to 2.",
        ),
        (
            lambda: model.decode(codes, speaker=[-1, 0]),
            ValueError,
            "`speaker` ids must be in [0, num_speakers=2). "
            "Received: ids from -1 to 0.",
        ),
        (
            lambda: model.decode(codes, speaker=[0.0, 1.0]),
            TypeError,
            "`speaker` must be integer ids. Received: speaker.dtype=float32",
        ),
        (
            lambda: model.decode(codes, speaker=[0]),
            ValueError,
            "`speaker` must have shape (batch,), one id per example "
            "(batch=2). Received: speaker.shape=(1,)",
        ),
        (
            lambda: model(waves),
            ValueError,
            "`vqvae` is conditioned on num_speakers=2 speakers: inputs must "
            'be a dict {"audio": waveforms, "speaker": ids}. Received: '
            "inputs.shape=(2, 512, 1)",
        ),
        (
            lambda: model.decode(codes),
            ValueError,
            "`vqvae` is conditioned on num_speakers=2 speakers; pass "
            "`speaker` ids (batch,).",
        ),
        (
            lambda: model({"waveform": waves, "speaker": ids}),
            ValueError,
            '`vqvae` takes {"audio": waveforms, "speaker": ids}. '
            "Received: a dict with keys ['speaker', 'waveform'].",
        ),
        (
            lambda: plain.decode(codes, speaker=[0, 1]),
            ValueError,
            "`plain` has no speaker embedding (num_speakers=None); decode "
            "without `speaker`.",
        ),
        (
            lambda: VQVAE(modality="audio"),
            ValueError,
            "`modality='audio'` needs spatial_dims=1 (waveforms (batch, "
            "samples, 1)). Received: spatial_dims=2",
        ),
        (
            lambda: VQVAE(modality="audio", spatial_dims=1, likelihood="mse"),
            ValueError,
            "`likelihood` of modality='audio' models must be 'mu_law' or "
            "'mu_law_logistic'. Received: likelihood='mse', which is for "
            "the other modality.",
        ),
        (
            lambda: VQVAE(likelihood="mu_law"),
            ValueError,
            "`likelihood` of modality='image' models must be 'mse' or "
            "'discretized_logistic'. Received: likelihood='mu_law', which "
            "is for the other modality.",
        ),
        (
            lambda: VQVAE(num_speakers=4),
            ValueError,
            "`num_speakers` conditions audio models (modality='audio'). "
            "Received: num_speakers=4 with modality='image'",
        ),
        (
            lambda: VQVAE(modality="audio", spatial_dims=1, num_speakers=0),
            ValueError,
            "`num_speakers` must be a positive integer. "
            "Received: num_speakers=0 (of type int).",
        ),
        (
            lambda: VQVAE(example_shape=(512,), **TINY_AUDIO),
            ValueError,
            "`example_shape` must be None or 2 positive integers (*spatial, "
            "channels), e.g. (16384, 1) (a spatial size may be None). "
            "Received: example_shape=(512,) (of type tuple).",
        ),
        (
            lambda: VQVAE(modality="speech"),
            ValueError,
            "`modality` must be 'image' or 'audio'. "
            "Received: modality='speech' (of type str).",
        ),
    ]
    for call, error_type, message in cases:
        with pytest.raises(error_type) as error:
            call()
        assert message in str(error.value)


def test_graphs_refuse_bad_waveforms_and_speakers():
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=2)
    model({"audio": waves, "speaker": np.array([0, 1], "int32")})
    decode = tf.function(model.decode)
    codes = model.encode(waves)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="`speaker` ids must be in"
    ):
        decode(codes, tf.constant([0, 5]))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Waveforms must be floating"
    ):
        tf.function(model.encode)(waves * 3)


# -------------------------------------------------------- bits per sample
def test_bits_per_sample_matches_numpy():
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=3)
    speakers = np.array([1, 0, 1], "int32")
    codes = model.encode(waves)
    logits = np.asarray(model.decoder_outputs(codes, speakers), "float64")
    log_px = np.take_along_axis(
        np_log_softmax(logits), np_mu_law_encode(waves[..., 0])[..., None], -1
    )[..., 0].sum(-1)
    expected = -log_px.mean() / (SAMPLES * np.log(2))
    assert 0 < expected < 9
    np.testing.assert_allclose(
        reconstruction_bits_per_sample(model, waves, speakers),
        expected,
        rtol=1e-5,
    )
    # The uniform prior adds log2(K) bits per code, one code per 64 samples.
    np.testing.assert_allclose(
        bits_per_sample(model, None, waves, speakers),
        expected + (SAMPLES // 64) * np.log2(16) / SAMPLES,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="must be an audio model"):
        reconstruction_bits_per_sample(
            VQVAE(num_embeddings=4, embedding_dim=2, num_hiddens=4), waves
        )


def test_evaluate_audio_model_over_a_dataset_matches_numpy():
    model = VQVAE(num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=6, seed=3)
    speakers = np.array([0, 1, 1, 0, 1, 0], "int32")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"audio": waves, "speaker": speakers}
    ).batch(4)
    results = evaluate_audio_model(model, dataset)
    codes = model.encode(waves)
    logits = np.asarray(model.decoder_outputs(codes, speakers), "float64")
    log_px = np.take_along_axis(
        np_log_softmax(logits), np_mu_law_encode(waves[..., 0])[..., None], -1
    ).sum()
    samples = waves.size
    decoded = (
        np.exp(np_log_softmax(logits)) * np_mu_law_decode(np.arange(256))
    ).sum(-1)
    error = ((decoded - waves[..., 0]) ** 2).sum()
    expected = {
        "likelihood": "mu_law",
        "num_waveforms": 6,
        "num_samples": samples,
        "reconstruction_bits_per_sample": -log_px / (samples * np.log(2)),
        "bits_per_sample_uniform_prior": -log_px / (samples * np.log(2))
        + 6 * (SAMPLES // 64) * 4 / samples,
        "bits_per_sample_prior": None,
        "mse": error / samples,
        "snr_db": 10 * np.log10((waves**2).sum() / error),
        # Its numpy reference is in test_speech_metrics.
        "log_mel_distance_db": float(
            np.mean(log_mel_distance(waves, decoded[..., None].astype("f4")))
        ),
        "num_levels": 1,
        "bits_per_position_uniform_prior": 4.0,
    }
    for key, value in expected.items():
        if isinstance(value, float):
            # atol: an untrained decoder's SNR is about 0 dB.
            np.testing.assert_allclose(
                results[key], value, rtol=1e-4, atol=1e-5
            )
        else:
            assert results[key] == value, key
    counts = np.bincount(np.asarray(codes).ravel(), minlength=16)
    assert results["codebook_usage"] == (counts > 0).mean()


# --------------------------------------------------------------- precision
def test_audio_model_under_mixed_bfloat16():
    """The new layers take the model's policy; logits, NLL and outputs stay
    float32; a fit step gives a finite loss."""
    model = VQVAE(dtype="mixed_bfloat16", num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=2)
    batch = {"audio": waves, "speaker": np.array([0, 1], "int32")}
    outputs = model(batch)
    assert keras.config.dtype_policy().name == "float32"
    assert outputs.dtype == tf.float32
    speaker_layers = model.decoder.speaker_embeddings
    assert {layer.compute_dtype for layer in speaker_layers} == {"bfloat16"}
    assert model.decoder.compute_dtype == "bfloat16"
    for variable in model.variables:
        assert variable.dtype in ("float32", "int64"), variable.path
    assert all(loss.dtype == tf.float32 for loss in model.losses)
    codes = model.encode(waves)
    assert model.decoder_outputs(codes, [0, 1]).dtype == tf.float32
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(batch, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ------------------------------------------- discretized logistic mixture
LOGISTIC_AUDIO = dict(TINY_AUDIO, likelihood="mu_law_logistic", num_mixtures=3)


def test_mu_law_logistic_model_matches_numpy():
    model = VQVAE(num_speakers=2, **LOGISTIC_AUDIO)
    waves = chirp(batch=3)
    speakers = np.array([1, 0, 1], "int32")
    outputs = model({"audio": waves, "speaker": speakers}, training=False)
    assert outputs.dtype == tf.float32 and tuple(outputs.shape) == (
        3,
        SAMPLES,
        1,
    )
    codes = model.encode(waves)
    params = model.decoder_outputs(codes, speakers)
    assert params.dtype == tf.float32 and tuple(params.shape) == (3, SAMPLES, 9)
    params = np.asarray(params, "float64")
    probs = np_logistic_mixture_probs(params, 3)
    picked = np.take_along_axis(
        probs, np_mu_law_encode(waves[..., 0])[..., None], -1
    )[..., 0]
    # The loss: mean NLL in nats per sample.
    loss = float(tf.add_n(model.losses) - tf.add_n(model.quantizer.losses))
    np.testing.assert_allclose(loss, -np.log(picked).mean(), rtol=1e-4)
    decoded = model.decode(codes, speakers)
    np.testing.assert_array_equal(decoded, outputs)
    np.testing.assert_allclose(
        np.asarray(decoded)[..., 0],
        np_logistic_mixture_mean(params, 3),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        reconstruction_bits_per_sample(model, waves, speakers),
        -np.log(picked).sum(-1).mean() / (SAMPLES * np.log(2)),
        rtol=1e-4,
    )


def test_mu_law_logistic_round_trip_and_learning(tmp_path):
    keras.utils.set_random_seed(0)
    model = VQVAE(**LOGISTIC_AUDIO)
    waves = chirp(batch=8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(waves, batch_size=4, epochs=12, verbose=0).history
    reconstruction = history["reconstruction_loss"]
    # Wide components at first (about 7 nats); the scales shrink.
    assert reconstruction[-1] < reconstruction[0] - 0.2, reconstruction
    config = model.get_config()
    assert config["likelihood"] == "mu_law_logistic"
    assert config["num_mixtures"] == 3
    path = str(tmp_path / "logistic.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.num_mixtures == 3 and loaded.likelihood == "mu_law_logistic"
    codes = model.encode(waves)
    np.testing.assert_array_equal(loaded.encode(waves), codes)
    np.testing.assert_array_equal(
        loaded.decoder_outputs(codes), model.decoder_outputs(codes)
    )
    np.testing.assert_array_equal(loaded.decode(codes), model.decode(codes))


def test_num_mixtures_defaults_and_bad_values():
    assert (
        VQVAE(**dict(TINY_AUDIO, likelihood="mu_law_logistic")).num_mixtures
        == 10
    )
    assert VQVAE(**TINY_AUDIO).num_mixtures is None
    with pytest.raises(ValueError, match="`num_mixtures` is for likelihood="):
        VQVAE(num_mixtures=3, **TINY_AUDIO)
    with pytest.raises(ValueError, match="num_mixtures"):
        VQVAE(**dict(LOGISTIC_AUDIO, num_mixtures=0))


def test_mu_law_logistic_under_mixed_bfloat16():
    """bfloat16 decoder, float32 likelihood math: parameters, loss and
    waveforms are float32; a fit step is finite."""
    model = VQVAE(dtype="mixed_bfloat16", **LOGISTIC_AUDIO)
    waves = chirp(batch=2)
    outputs = model(waves)
    assert model.decoder.compute_dtype == "bfloat16"
    assert outputs.dtype == tf.float32
    assert all(loss.dtype == tf.float32 for loss in model.losses)
    assert model.decoder_outputs(model.encode(waves)).dtype == tf.float32
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(waves, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ----------------------------------------------------------- encoder input
@pytest.mark.parametrize("encoder_input", ["mu_law", "linear"])
def test_encoder_input(encoder_input):
    """`"mu_law"`: the encoder sees the companded waveform (numpy formula,
    not quantized); `"linear"`: the waveform itself."""
    model = VQVAE(encoder_input=encoder_input, **TINY_AUDIO)
    assert model.get_config()["encoder_input"] == encoder_input
    waves = chirp(batch=2) * np.float32(0.1)  # speech-like amplitude
    seen = waves
    if encoder_input == "mu_law":
        seen = np.sign(waves) * np.log1p(255 * np.abs(waves)) / np.log1p(255)
    np.testing.assert_allclose(
        model.latents(waves),
        model.encoder(seen.astype("float32")),
        rtol=1e-5,
        atol=1e-6,
    )


def test_log_mel_encoder_input(tmp_path):
    """`"log_mel"`: the encoder reads `LogMelFrames` at the code rate (no
    strided convolutions), learns, and the model round-trips bit-exactly."""
    from tf_vqvae.spectral import LogMelFrames

    keras.utils.set_random_seed(0)
    model = VQVAE(encoder_input="log_mel", num_speakers=2, **TINY_AUDIO)
    waves = chirp(batch=2)
    speaker = np.array([1, 0], "int32")
    inputs = {"audio": waves, "speaker": speaker}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Adam at 1e-2 overshoots for the first few steps (the loss rises before
    # it falls, on every seed tried), so the claim is about 20 steps.
    loss = model.fit(inputs, batch_size=2, epochs=20, verbose=0).history["loss"]
    assert loss[-1] < 0.85 * loss[0]
    assert model.encoder.num_downsamples == 0 and not model.encoder.downsamples
    assert model.get_config()["num_downsamples"] == 6
    # Every argument is recorded by the model, none left to the defaults.
    assert model.front_end.get_config()["frame_length"] == 400
    frames = LogMelFrames(hop=64)(waves)
    assert frames.shape == (2, SAMPLES // 64, 40)
    np.testing.assert_allclose(
        model.latents(waves), model.encoder(frames), rtol=1e-5, atol=1e-6
    )
    codes = model.encode(waves)
    assert codes.shape == (2, SAMPLES // 64)
    assert model.decode(codes, speaker).shape == waves.shape
    path = str(tmp_path / "log_mel.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.encoder_input == "log_mel"
    np.testing.assert_array_equal(loaded.encode(waves), codes)
    np.testing.assert_array_equal(loaded(inputs), model(inputs))


def test_log_mel_front_end_covers_long_hops():
    """Past 400 samples per code the window and the DFT widen to the hop."""
    model = VQVAE(
        **{**TINY_AUDIO, "num_downsamples": 9}, encoder_input="log_mel"
    )
    config = model.front_end.get_config()
    assert (config["hop"], config["frame_length"], config["fft_length"]) == (
        512,
        512,
        512,
    )
    assert model.encode(chirp(batch=1, samples=1024)).shape == (1, 2)


def test_encoder_input_defaults():
    assert VQVAE(**TINY_AUDIO).encoder_input == "mu_law"
    assert VQVAE().encoder_input == "linear"
    # A config saved before the option (no key) keeps its linear input.
    config = VQVAE(**TINY_AUDIO).get_config()
    del config["encoder_input"]
    assert VQVAE.from_config(config).encoder_input == "linear"
    config["encoder_input"] = "mu_law"
    assert VQVAE.from_config(config).encoder_input == "mu_law"


def test_encoder_input_bad_values():
    with pytest.raises(ValueError, match="`encoder_input` must be"):
        VQVAE(encoder_input="log", **TINY_AUDIO)
    with pytest.raises(ValueError, match="`encoder_input` must be"):
        VQVAE(encoder_input="mu_law")
    message = (
        "`encoder_input` must be 'linear' or (audio only) 'mu_law' or "
        "'log_mel'. Received: encoder_input='log_mel' with modality='image'"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        VQVAE(encoder_input="log_mel")


def test_mu_law_logistic_log_scales_start_narrow():
    """The output bias starts the log scales at INITIAL_LOG_SCALE (the
    layout's last num_mixtures channels), the rest at zero."""
    from tf_vqvae.vqvae import INITIAL_LOG_SCALE

    model = VQVAE(**LOGISTIC_AUDIO)
    waves = chirp(batch=2)
    params = np.asarray(model.decoder_outputs(model.encode(waves)))
    bias = np.asarray(model.decoder.upsamples[-1].bias)
    np.testing.assert_array_equal(bias, [0] * 6 + [INITIAL_LOG_SCALE] * 3)
    assert abs(params[..., 6:].mean() - INITIAL_LOG_SCALE) < 0.5
    assert abs(params[..., 3:6].mean()) < 0.5


# ---------------------------------------------------------- spectral loss
def test_spectral_loss_adds_the_weighted_stft_loss_of_the_decoded_waveform():
    """The loss is the plain model's plus w * the STFT loss of `model(x)`
    (same weights), and `spectral_loss` reports the unweighted term."""
    from tf_vqvae.spectral import multi_resolution_stft_loss

    waves = chirp(batch=2)
    plain = VQVAE(**TINY_AUDIO)
    weighted = VQVAE(spectral_loss_weight=0.5, **TINY_AUDIO)
    plain(waves)
    weighted(waves)
    weighted.set_weights(plain.get_weights())
    decoded = plain(waves)
    np.testing.assert_array_equal(weighted(waves), decoded)
    # Resolutions longer than the 512-sample clip are left out.
    stft = float(
        tf.reduce_mean(multi_resolution_stft_loss(waves, decoded, (256, 512)))
    )
    np.testing.assert_allclose(
        float(tf.add_n(weighted.losses)),
        float(tf.add_n(plain.losses)) + 0.5 * stft,
        rtol=1e-5,
    )
    weighted.compile(optimizer="adam")
    logs = weighted.evaluate(waves, batch_size=2, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["spectral_loss"], stft, rtol=1e-5)
    assert "spectral_loss" not in plain.get_metrics_result()


def test_spectral_loss_weight_config_and_round_trip(tmp_path):
    model = VQVAE(spectral_loss_weight=1, **TINY_AUDIO)
    assert model.get_config()["spectral_loss_weight"] == 1.0
    assert VQVAE(**TINY_AUDIO).get_config()["spectral_loss_weight"] is None
    waves = chirp(batch=2)
    model(waves)
    path = str(tmp_path / "spectral.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.spectral_loss_weight == 1.0
    np.testing.assert_array_equal(loaded(waves), model(waves))
    np.testing.assert_array_equal(
        tf.add_n(loaded.losses), tf.add_n(model.losses)
    )


@pytest.mark.slow
def test_spectral_loss_trains_the_decoded_spectrum():
    """On one chirp batch the STFT loss of the decoded waveform falls.

    Seeded: with some initialisations this tiny codebook collapses to one
    code at once (perplexity 1), and the chirps' random phases then average
    to a flat output whatever the decoder learns."""
    keras.utils.set_random_seed(0)
    model = VQVAE(spectral_loss_weight=1.0, **TINY_AUDIO)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(chirp(batch=4), batch_size=4, epochs=30, verbose=0)
    spectral_losses = history.history["spectral_loss"]
    assert min(spectral_losses[-5:]) < 0.9 * spectral_losses[0]


def test_spectral_loss_weight_bad_values():
    # `TrainConfig` refuses inf too (`vqvae train --spectral-loss-weight`).
    message = "`spectral_loss_weight` must be None or a finite number >= 0"
    for bad in [-1.0, "1", True, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match=message):
            VQVAE(spectral_loss_weight=bad, **TINY_AUDIO)
    with pytest.raises(ValueError, match=message + r".*modality='image'"):
        VQVAE(spectral_loss_weight=1.0)
    with pytest.raises(ValueError, match=message + r".*decoder='wavenet'"):
        VQVAE(spectral_loss_weight=1.0, decoder="wavenet", **TINY_AUDIO)
