"""Tests of the WaveNet audio decoder (issue 16): numpy reference of the
teacher-forced logits, causality, cached == naive generation, VQVAE
integration (loss, bits per sample, save/reload, speakers, errors)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_vqvae import evaluation, likelihoods, sampling
from tf_vqvae.vqvae import VQVAE
from tf_vqvae.wavenet import WaveNetDecoder, bucket_length

TINY = dict(
    num_upsamples=2,
    residual_channels=4,
    skip_channels=5,
    condition_channels=3,
    num_layers=3,
    dilation_cycle=2,
)
TINY_MODEL = dict(
    modality="audio",
    spatial_dims=1,
    num_embeddings=8,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
    num_downsamples=2,
    decoder="wavenet",
    decoder_options=dict(
        residual_channels=4,
        skip_channels=4,
        condition_channels=3,
        num_layers=3,
        dilation_cycle=2,
    ),
)


def _set_random_weights(layer, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [
            scale * rng.normal(size=w.shape).astype("float32")
            for w in layer.weights
        ]
    )


def _decoder(seed=1, **kwargs):
    decoder = WaveNetDecoder(**{**TINY, **kwargs})
    decoder.build((None, 5, 6))
    _set_random_weights(decoder, seed)
    return decoder


def _inputs(batch=2, codes=5, seed=0):
    rng = np.random.default_rng(seed)
    z_q = rng.normal(size=(batch, codes, 6)).astype("float32")
    samples = rng.integers(0, 256, size=(batch, codes * 4)).astype("int32")
    return z_q, samples


# ------------------------------------------------------ numpy reference
def _causal_conv(x, kernel, bias, dilation):
    k = kernel.shape[0]
    out = np.zeros(x.shape[:2] + (kernel.shape[-1],))
    for t in range(x.shape[1]):
        for j in range(k):
            source = t - (k - 1 - j) * dilation
            if source >= 0:
                out[:, t] += x[:, source] @ kernel[j]
    return out + bias


def _conv_same(x, kernel, bias):
    """Keras Conv1D, padding "same", odd kernel."""
    k = kernel.shape[0]
    padded = np.pad(x, [(0, 0), (k // 2, k // 2), (0, 0)])
    out = np.zeros(x.shape[:2] + (kernel.shape[-1],))
    for t in range(x.shape[1]):
        for j in range(k):
            out[:, t] += padded[:, t + j] @ kernel[j]
    return out + bias


def _conv_transpose(x, kernel, bias):
    """Keras Conv1DTranspose(window 4, stride 2, "same"): input i adds
    `x[i] @ kernel[j].T` at output `2 i + j - 1`."""
    length = x.shape[1]
    out = np.zeros((x.shape[0], 2 * length, kernel.shape[1]))
    for i in range(length):
        for j in range(4):
            position = 2 * i + j - 1
            if 0 <= position < 2 * length:
                out[:, position] += x[:, i] @ kernel[j].T
    return out + bias


def _gate(z):
    a, b = np.split(z, 2, axis=-1)
    return np.tanh(a) / (1.0 + np.exp(-b))


def _numpy_logits(decoder, z_q, samples, speaker=None):
    """The teacher-forced logits recomputed from the weights, float64."""
    w = {v.path: v.numpy().astype("float64") for v in decoder.weights}
    name = decoder.name

    def dense(x, layer):
        out = x @ w[f"{layer}/kernel"][0]
        bias = w.get(f"{layer}/bias")
        return out if bias is None else out + bias

    h = _conv_same(
        z_q,
        w[f"{name}/condition_conv/kernel"],
        w[f"{name}/condition_conv/bias"],
    )
    for i in range(decoder.num_upsamples):
        h = _conv_transpose(
            np.maximum(h, 0.0),
            w[f"{name}/up{i}/kernel"],
            w[f"{name}/up{i}/bias"],
        )
    x = w[f"{name}/sample_embedding/embeddings"][samples]
    x = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    skip = 0.0
    for i, dilation in enumerate(decoder.dilations):
        block = f"{name}/block{i}"
        pre = _causal_conv(
            x, w[f"{block}/conv/kernel"], w[f"{block}/conv/bias"], dilation
        )
        pre = pre + dense(h, f"{block}/local")
        if speaker is not None:
            pre = pre + w[f"{name}/speaker{i}/embeddings"][speaker][:, None]
        g = _gate(pre)
        skip = skip + dense(g, f"{block}/skip_output")
        if i < decoder.num_layers - 1:
            x = x + dense(g, f"{block}/residual_output")
    hidden = dense(np.maximum(skip, 0.0), f"{name}/head_hidden")
    return dense(np.maximum(hidden, 0.0), f"{name}/head_logits")


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(kernel_size=3, num_speakers=3)],
    ids=["k2", "k3-speakers"],
)
def test_teacher_forced_logits_match_numpy(kwargs):
    decoder = _decoder(**kwargs)
    z_q, samples = _inputs()
    speaker = None if "num_speakers" not in kwargs else np.array([2, 0])
    logits = decoder(z_q, samples, speaker=speaker)
    assert logits.shape == (2, 20, 256) and logits.dtype == tf.float32
    np.testing.assert_allclose(
        logits,
        _numpy_logits(decoder, z_q, samples, speaker),
        rtol=1e-4,
        atol=1e-4,
    )


# ------------------------------------------------------------ causality
@pytest.mark.parametrize("position", [0, 7, 19])
def test_logits_depend_on_earlier_samples_and_the_codes_only(position):
    # Enough condition channels that a random ReLU upsampler keeps a path
    # from the code at the edges.
    decoder = _decoder(num_speakers=2, condition_channels=16)
    z_q, samples = _inputs(batch=1)
    speaker = np.array([1])
    reference = decoder(z_q, samples, speaker=speaker).numpy()
    changed = samples.copy()
    changed[:, position:] = (changed[:, position:] + 101) % 256
    after = decoder(z_q, changed, speaker=speaker).numpy()
    # Samples >= t never reach the logits at t ...
    np.testing.assert_array_equal(
        after[:, : position + 1], reference[:, : position + 1]
    )
    # ... the sample just before does (when there is one) ...
    if position + 1 < samples.shape[1]:
        assert (
            np.abs(after[:, position + 1] - reference[:, position + 1]).max()
            > 1e-4
        )
    # ... and so does the code covering t (4 samples per code).
    other = z_q.copy()
    other[:, position // 4] *= -2.0
    moved = decoder(other, samples, speaker=speaker).numpy()
    assert np.abs(moved[:, position] - reference[:, position]).max() > 1e-4


def test_speaker_changes_the_logits():
    decoder = _decoder(num_speakers=2)
    z_q, samples = _inputs()
    a = decoder(z_q, samples, speaker=np.array([0, 0])).numpy()
    b = decoder(z_q, samples, speaker=np.array([1, 1])).numpy()
    assert np.abs(a - b).min(axis=-1).max() > 1e-3


def test_receptive_field_and_upsampling_factor():
    decoder = WaveNetDecoder(num_layers=10, dilation_cycle=10)
    assert decoder.receptive_field == 1024
    assert decoder.upsampling_factor == 64
    assert decoder.compute_output_shape((2, 3, 64)) == (2, 192, 256)


# ------------------------------------------------------------ generation
@pytest.mark.parametrize(
    "kwargs, temperature",
    [(dict(), 1.0), (dict(kernel_size=3, num_speakers=2), 0.7)],
    ids=["plain", "k3-speakers-t0.7"],
)
def test_cached_generation_equals_naive(kwargs, temperature):
    decoder = _decoder(**kwargs)
    z_q, _ = _inputs()
    noise = tf.random.stateless_uniform((2, 20, 256), seed=(4, 2))
    speaker = None if "num_speakers" not in kwargs else np.array([1, 0])
    cached = decoder.generate(z_q, noise, speaker, temperature=temperature)
    naive = decoder.generate(
        z_q, noise, speaker, temperature=temperature, method="naive"
    )
    assert cached.dtype == tf.int32 and cached.shape == (2, 20)
    np.testing.assert_array_equal(cached, naive)
    # The samples are draws from the teacher-forced logits of themselves.
    logits = decoder(z_q, cached, speaker=speaker).numpy() / temperature
    gumbel = -np.log(-np.log(np.clip(noise.numpy(), 1e-38, 1 - 6e-8)))
    np.testing.assert_array_equal(cached, np.argmax(logits + gumbel, -1))


def test_cached_generation_compiles_once_per_bucket_of_lengths():
    decoder = _decoder()
    for codes in (9, 10):  # 36 and 40 samples: both in the bucket of 40
        z_q, _ = _inputs(codes=codes)
        noise = tf.random.stateless_uniform(
            (2, 4 * codes, 256), seed=(codes, 1)
        )
        cached = decoder.generate(z_q, noise)
        assert cached.shape == (2, 4 * codes)
        naive = decoder.generate(z_q, noise, method="naive")
        np.testing.assert_array_equal(cached, naive)
    function = decoder._compiled_samplers[("cached", 1.0)]
    assert function.experimental_get_tracing_count() == 1


def test_bucket_length_pads_by_at_most_a_quarter_with_four_per_octave():
    lengths = np.arange(1, 5000)
    buckets = np.array([bucket_length(n) for n in lengths])
    assert np.all(buckets >= lengths) and np.all(buckets < 1.25 * lengths + 1)
    assert all(bucket_length(b) == b for b in set(buckets.tolist()))
    for k in range(12):
        octave = (lengths > 2**k) & (lengths <= 2 ** (k + 1))
        assert len(set(buckets[octave].tolist())) <= 4


def test_generate_rejects_bad_noise_and_options():
    decoder = _decoder()
    z_q, _ = _inputs()
    with pytest.raises(
        ValueError, match=r"`noise` must have shape \(n, 20, 256\)"
    ):
        decoder.generate(z_q, tf.zeros((2, 19, 256)))
    with pytest.raises(ValueError, match="`method` must be"):
        decoder.generate(z_q, tf.zeros((2, 20, 256)), method="fast")
    with pytest.raises(ValueError, match="speaker given: True"):
        decoder.generate(z_q, tf.zeros((2, 20, 256)), speaker=[0, 1])
    dynamic = tf.function(
        decoder.generate,
        input_signature=[
            tf.TensorSpec((2, None, 6)),
            tf.TensorSpec((2, None, 256)),
        ],
    )
    with pytest.raises(ValueError, match="needs a static number of codes"):
        dynamic.get_concrete_function()


def test_decoder_config_round_trip():
    decoder = WaveNetDecoder(**TINY, kernel_size=3, num_speakers=4)
    config = decoder.get_config()
    for key in (*TINY, "kernel_size", "num_speakers"):
        assert key in config
    assert WaveNetDecoder.from_config(config).get_config() == config


def test_invalid_decoder_arguments():
    for name, value in [
        ("num_upsamples", -1),
        ("residual_channels", 0),
        ("num_layers", 1.5),
        ("num_speakers", 0),
    ]:
        with pytest.raises(ValueError, match=f"`{name}` must be"):
            WaveNetDecoder(**{**TINY, name: value})


# ------------------------------------------------------------ in VQVAE
def _waveforms(batch=2, samples=32, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)[None, :, None]
    noise = 0.1 * rng.normal(size=(batch, samples, 1))
    return np.clip(tone + noise, -1, 1).astype("float32")


def _model(num_speakers=None):
    """A built tiny model; its decoder's weights random (N(0, 0.5^2)), so
    speakers and codes matter as much as in a trained one."""
    model = VQVAE(**TINY_MODEL, num_speakers=num_speakers)
    x = _waveforms()
    if num_speakers is None:
        model(x)
    else:
        model({"audio": x, "speaker": np.array([0, 1])})
    _set_random_weights(model.decoder, 7)
    return model, x


def test_vqvae_loss_is_the_teacher_forced_nll_and_bits_are_exact():
    model, x = _model(num_speakers=2)
    speakers = np.array([1, 0])
    codes = model.encode(x)
    logits = model.decoder_outputs(codes, speakers, waveforms=x).numpy()
    # Independent log-softmax and mu-law classes in numpy.
    y = np.sign(x[..., 0]) * np.log1p(255 * np.abs(x[..., 0])) / np.log1p(255)
    classes = np.clip(np.floor((y + 1) * 128), 0, 255).astype(int)
    z = logits.astype("float64")
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, classes[..., None], -1)[..., 0]
    bits = evaluation.reconstruction_bits_per_sample(model, x, speakers)
    assert bits == pytest.approx(nll.mean() / math.log(2), rel=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    result = model.evaluate(
        {"audio": x, "speaker": speakers}, verbose=0, return_dict=True
    )
    assert {"loss", "reconstruction_loss", "vq_loss"} <= set(result)
    assert result["reconstruction_loss"] == pytest.approx(nll.mean(), rel=1e-5)
    # `model(x)` is each sample's expected value given the true past.
    expected = likelihoods.mu_law_mean(logits)[..., None]
    np.testing.assert_allclose(
        model({"audio": x, "speaker": speakers}), expected, atol=1e-6
    )


def test_every_wavenet_decoder_weight_gets_a_gradient():
    model, x = _model()
    with tf.GradientTape() as tape:
        model(x, training=True)
        loss = tf.add_n(model.losses)
    gradients = tape.gradient(loss, model.decoder.trainable_weights)
    assert len(gradients) == len(model.decoder.trainable_weights) > 0
    for weight, gradient in zip(
        model.decoder.trainable_weights, gradients, strict=True
    ):
        assert gradient is not None, weight.path
        assert float(tf.reduce_max(tf.abs(gradient))) > 0, weight.path


def test_vqvae_decode_generates_from_a_seed():
    model, x = _model(num_speakers=2)
    codes = model.encode(x)
    speakers = [0, 1]
    a = model.decode(codes, speakers, seed=3)
    assert a.shape == (2, 32, 1) and a.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(a))) <= 1.0
    np.testing.assert_array_equal(a, model.decode(codes, speakers, seed=3))
    np.testing.assert_array_equal(
        a, model.decode(codes, speakers, seed=3, method="naive")
    )
    assert not np.array_equal(a, model.decode(codes, speakers, seed=4))
    # The samples are the mu-law centres the cached decoder drew.
    noise = tf.random.stateless_uniform((2, 32, 256), seed=[3, 0])
    z_q = model.quantizer.lookup(codes)
    classes = model.decoder.generate(z_q, noise, tf.constant(speakers))
    np.testing.assert_array_equal(a[..., 0], likelihoods.mu_law_decode(classes))
    other = model.decode(codes, [1, 0], seed=3)
    assert not np.array_equal(a, other)


def test_vqvae_decode_with_a_seed_per_example_ignores_the_batching():
    model, x = _model(num_speakers=2)
    codes = model.encode(x)
    seeds = sampling.example_seeds(5, 0, 2)
    both = model.decode(codes, [0, 1], seed=seeds)
    # Each example alone, with its own seed: the same waveform.
    for i in range(2):
        alone = model.decode(codes[i : i + 1], [i], seed=seeds[i : i + 1])
        np.testing.assert_array_equal(alone, both[i : i + 1])
    # Example i is the cached generator on `example_noise` row i.
    noise = sampling.example_noise(seeds, (32, 256))
    classes = model.decoder.generate(
        model.quantizer.lookup(codes), noise, tf.constant([0, 1])
    )
    np.testing.assert_array_equal(
        both[..., 0], likelihoods.mu_law_decode(classes)
    )
    other = model.decode(codes, [0, 1], seed=sampling.example_seeds(6, 0, 2))
    assert not np.array_equal(other, both)
    with pytest.raises(ValueError) as raised:
        model.decode(codes, [0, 1], seed=sampling.example_seeds(5, 0, 3))
    assert str(raised.value) == (
        "`seed` of shape (batch, 2) must have one seed per example "
        "(batch=2). Received: seed.shape=(3, 2)"
    )


def test_vqvae_with_wavenet_decoder_saves_and_reloads(tmp_path):
    model, x = _model(num_speakers=2)
    speakers = np.array([1, 0])
    codes = model.encode(x)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config()["decoder"] == "wavenet"
    assert (
        restored.get_config()["decoder_options"]
        == (TINY_MODEL["decoder_options"])
    )
    assert isinstance(restored.decoder, WaveNetDecoder)
    np.testing.assert_array_equal(restored.encode(x), codes)
    np.testing.assert_array_equal(
        restored.decoder_outputs(codes, speakers, waveforms=x),
        model.decoder_outputs(codes, speakers, waveforms=x),
    )
    # Same weights, so the same generation (not rerun: compiling the
    # sampler twice costs seconds).


@pytest.mark.parametrize("exporter", ["saved_model", "tflite"])
def test_export_refuses_a_generative_decoder(exporter, tmp_path):
    from tf_vqvae.export import saved_model, tflite

    model, _ = _model(num_speakers=2)
    assert model.generative_decoder
    message = (
        r"^This export supports one-pass decoders; this model's decoder "
        r"generates sample by sample \(decoder='wavenet'\), which export "
        r"does not trace yet\. Received: model\.generative_decoder=True$"
    )
    with pytest.raises(ValueError, match=message):
        if exporter == "saved_model":
            saved_model.export_saved_model(model, str(tmp_path / "sm"))
        else:
            tflite.export_tflite(model, str(tmp_path / "tfl"))
    assert not any(tmp_path.iterdir())


def test_parallel_decoder_is_the_default_and_unchanged():
    model = VQVAE(
        **{**TINY_MODEL, "decoder": "parallel", "decoder_options": None}
    )
    assert model.get_config()["decoder"] == "parallel"
    assert model.get_config()["decoder_options"] is None
    assert not model.generative_decoder
    x = _waveforms()
    model(x)
    codes = model.encode(x)
    # The parallel decoder ignores `waveforms`.
    np.testing.assert_array_equal(
        model.decoder_outputs(codes), model.decoder_outputs(codes, waveforms=x)
    )
    with pytest.raises(
        ValueError,
        match=r"^`seed`, `temperature` and `method` are for decoder='wavenet' "
        r"\(generation\)\. Received: seed=1, temperature=1\.0, "
        r"method='cached' with decoder='parallel'$",
    ):
        model.decode(codes, seed=1)


def test_invalid_decoder_choices():
    audio = {k: v for k, v in TINY_MODEL.items() if k.startswith("decoder")}
    del audio["decoder_options"]
    cases = [
        (
            dict(decoder="transformer"),
            r"^`decoder` must be 'parallel' or 'wavenet'\. Received: "
            r"decoder='transformer' \(of type str\)\.$",
        ),
        (
            dict(decoder="wavenet"),
            r"^decoder='wavenet' needs modality='audio' and "
            r"likelihood='mu_law'\. Received: modality='image', "
            r"likelihood='mse'$",
        ),
        (
            dict(
                modality="audio",
                spatial_dims=1,
                decoder_options={"num_layers": 2},
            ),
            r"^`decoder_options` are for decoder='wavenet'\. Received: "
            r"decoder_options=\{'num_layers': 2\}$",
        ),
        (
            dict(
                modality="audio",
                spatial_dims=1,
                decoder="wavenet",
                decoder_options={"layers": 2},
            ),
            r"^`decoder_options` of decoder='wavenet' take residual_channels, "
            r"skip_channels, condition_channels, num_layers, "
            r"dilation_cycle, kernel_size\. Received: \['layers'\]$",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            VQVAE(**kwargs)
    model, x = _model()
    with pytest.raises(ValueError, match="pass `waveforms`"):
        model.decoder_outputs(model.encode(x))


@pytest.mark.slow
def test_evaluate_audio_model_scores_the_wavenet_decoder_exactly():
    # Slow: ~13 s, mostly compiling the generator for a dataset's batch.
    model, x = _model(num_speakers=2)
    speakers = np.array([1, 0])
    dataset = tf.data.Dataset.from_tensor_slices(
        {"audio": x, "speaker": speakers}
    ).batch(2)
    results = evaluation.evaluate_audio_model(model, dataset)
    assert results["reconstruction_bits_per_sample"] == pytest.approx(
        evaluation.reconstruction_bits_per_sample(model, x, speakers),
        rel=1e-6,
    )
    # MSE/SNR are of generated waveforms (decode): finite, in range.
    assert np.isfinite(results["snr_db"]) and 0 <= results["mse"] <= 4


def test_tensorboard_callbacks_generate_from_their_seed(tmp_path):
    from tf_vqvae.training.callbacks import PriorSamples, ReconstructionAudio

    model, x = _model(num_speakers=2)
    speakers = np.array([1, 0], np.int32)
    codes = model.encode(x)

    def clips(seed):
        return ReconstructionAudio(
            str(tmp_path), x, speakers, model=model, seed=seed
        ).reconstructions()

    expected = model.decode(
        codes, speakers, seed=sampling.example_seeds(3, 0, 2)
    )
    np.testing.assert_array_equal(clips(3), expected)
    np.testing.assert_array_equal(clips(3), clips(3))
    assert not np.array_equal(clips(4), expected)

    def prior_samples(seed):
        callback = PriorSamples(
            str(tmp_path), lambda num, seed: codes, model, 2, seed=seed
        )
        return callback.decoded()

    # Sample i as speaker i % num_speakers, from example seed i.
    expected = model.decode(codes, [0, 1], seed=sampling.example_seeds(3, 0, 2))
    np.testing.assert_array_equal(prior_samples(3), expected)
    np.testing.assert_array_equal(prior_samples(3), prior_samples(3))
    assert not np.array_equal(prior_samples(4), expected)
    # Only the given speakers, in turn (e.g. the trained ones).
    only_one = PriorSamples(
        str(tmp_path), lambda num, seed: codes, model, 2, seed=3, speakers=[1]
    ).decoded()
    expected = model.decode(codes, [1, 1], seed=sampling.example_seeds(3, 0, 2))
    np.testing.assert_array_equal(only_one, expected)
