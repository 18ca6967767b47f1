"""bits/dim against numpy, codes datasets, evaluate_model, and the VQ-VAE's
discretized logistic decoder."""

import importlib.util
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special

import tf_vqvae
from tf_vqvae import VQVAE, PixelCNNPrior, bits_per_dim
from tf_vqvae.evaluation import (
    codes_dataset,
    evaluate_model,
    fit_gaussian_scale,
    format_evaluation,
    level_code_counts,
)

TINY_VQVAE = dict(
    num_embeddings=6,
    embedding_dim=4,
    num_hiddens=8,
    num_residual_blocks=1,
    num_residual_hiddens=4,
    num_downsamples=1,
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(count=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 8, 8, 3)).astype("uint8")


def _vqvae(likelihood):
    model = VQVAE(**TINY_VQVAE, likelihood=likelihood)
    model(_images())
    return model


def _prior(num_classes=None):
    return PixelCNNPrior(
        6, (4, 4), num_hiddens=8, num_layers=2, num_classes=num_classes
    )


# ------------------------------------------------------- numpy reference
def _numpy_bin_log_prob(values, cdf):
    """log P(v) for ints `values` in [0, 255] (edge bins to +-inf)."""
    x = values / 255.0
    upper = np.where(values == 255, np.inf, x + 0.5 / 255)
    lower = np.where(values == 0, -np.inf, x - 0.5 / 255)
    return np.log(cdf(upper) - cdf(lower))


def _numpy_log_px(model, images, codes):
    values = images.astype("int64")
    if model.likelihood == "discretized_logistic":
        outputs = model.decoder(model.quantizer.lookup(codes)).numpy()
        loc = outputs[..., :3].astype("float64") + 0.5
        scale = np.exp(np.maximum(outputs[..., 3:].astype("float64"), -7.0))
        per_pixel = _numpy_bin_log_prob(
            values, lambda t: special.expit((t - loc) / scale)
        )
    else:
        mean = model.decode(codes).numpy().astype("float64")
        sigma = np.sqrt(np.mean((mean - values / 255.0) ** 2))
        per_pixel = _numpy_bin_log_prob(
            values, lambda t: special.ndtr((t - mean) / sigma)
        )
    return per_pixel.sum(axis=(1, 2, 3))


def _numpy_log_pz(prior, codes):
    logits = prior(codes).numpy().astype("float64")
    log_softmax = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    picked = np.take_along_axis(log_softmax, codes[..., None], -1)[..., 0]
    return picked.sum(axis=(1, 2))


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "mse"])
def test_bits_per_dim_matches_numpy(likelihood):
    model = _vqvae(likelihood)
    images = _images()
    codes = model.encode(images).numpy()
    log_px = _numpy_log_px(model, images, codes)
    for prior in (None, _prior()):
        if prior is None:
            log_pz = np.full(2, -16 * math.log(6))
        else:
            log_pz = _numpy_log_pz(prior, codes)
        expected = np.mean(-(log_px + log_pz) / (8 * 8 * 3 * math.log(2)))
        actual = bits_per_dim(model, prior, images)
        assert isinstance(actual, float)
        np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_bits_per_dim_with_a_prior_over_levels():
    # Residual VQ codes (batch, 4, 4, 3) under a prior over their levels:
    # log p(z) sums the log-softmax of all 4 x 4 x 3 codes.
    keras.utils.set_random_seed(0)
    model = VQVAE(
        **TINY_VQVAE,
        likelihood="discretized_logistic",
        quantizer="rvq",
        quantizer_options={"num_quantizers": 3},
    )
    images = _images()
    model(images)
    prior = PixelCNNPrior(6, (4, 4), num_hiddens=8, num_layers=2, num_levels=3)
    codes = model.encode(images).numpy()
    assert codes.shape == (2, 4, 4, 3)
    logits = prior(codes).numpy().astype("float64")
    log_softmax = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    log_pz = np.take_along_axis(log_softmax, codes[..., None], -1).sum(
        axis=(1, 2, 3, 4)
    )
    log_px = _numpy_log_px(model, images, codes)
    expected = np.mean(-(log_px + log_pz) / (192 * math.log(2)))
    np.testing.assert_allclose(
        bits_per_dim(model, prior, images), expected, rtol=1e-5
    )
    # A prior over one code per position does not model these codes.
    with pytest.raises(ValueError) as error:
        bits_per_dim(model, _prior(), images)
    assert str(error.value) == (
        "`prior` must model the VQ-VAE's codes: num_embeddings=6 and "
        "grid_shape=(4, 4) and num_levels=3. Received: "
        "prior.num_embeddings=6, prior.grid_shape=(4, 4), prior.num_levels=1."
    )


def test_bits_per_dim_accepts_float_images():
    model = _vqvae("discretized_logistic")
    images = _images()
    np.testing.assert_allclose(
        bits_per_dim(model, None, images / 255.0),
        bits_per_dim(model, None, images),
        rtol=1e-6,
    )


def test_bits_per_dim_with_labels():
    model = _vqvae("discretized_logistic")
    prior = _prior(num_classes=2)
    images = _images()
    labels = np.array([0, 1], "int32")
    codes = model.encode(images).numpy()
    logits = prior({"codes": codes, "labels": labels}).numpy()
    log_softmax = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    log_pz = np.take_along_axis(log_softmax, codes[..., None], -1).sum(
        axis=(1, 2, 3)
    )
    log_px = _numpy_log_px(model, images, codes)
    expected = np.mean(-(log_px + log_pz) / (192 * math.log(2)))
    np.testing.assert_allclose(
        bits_per_dim(model, prior, images, labels=labels), expected, rtol=1e-5
    )


def test_bits_per_dim_rejects_a_mismatched_prior():
    model = _vqvae("discretized_logistic")
    prior = PixelCNNPrior(6, (8, 8), num_hiddens=4, num_layers=1)
    with pytest.raises(ValueError) as error:
        bits_per_dim(model, prior, _images())
    assert str(error.value) == (
        "`prior` must model the VQ-VAE's codes: num_embeddings=6 and "
        "grid_shape=(4, 4). Received: prior.num_embeddings=6, "
        "prior.grid_shape=(8, 8)."
    )


# ---------------------------------------------------- codes and evaluate
def test_codes_dataset_is_cached_to_disk(tmp_path):
    model = _vqvae("mse")
    images = _images(6)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(3)
    cache = os.path.join(tmp_path, "codes")
    codes = codes_dataset(model, dataset, cache_path=cache)
    first = np.concatenate([c.numpy() for c in codes])
    np.testing.assert_array_equal(first, model.encode(images))
    assert any(name.startswith("codes") for name in os.listdir(tmp_path))
    # A new dataset on the same cache reads the file: after moving every
    # code vector but one far away, the encoder gives only that one code,
    # yet the cached codes come back unchanged.
    target = (first[0, 0, 0] + 1) % 6
    embeddings = np.full((6, 4), 1e3, "float32")
    embeddings[target] = 0.0
    model.quantizer.embeddings.assign(embeddings)
    np.testing.assert_array_equal(model.encode(images), target)
    again = codes_dataset(model, dataset, cache_path=cache)
    np.testing.assert_array_equal(
        np.concatenate([c.numpy() for c in again]), first
    )


def test_codes_dataset_with_labels():
    model = _vqvae("mse")
    dataset = tf.data.Dataset.from_tensor_slices(
        (_images(4), np.array([0, 1, 0, 1]))
    ).batch(2)
    codes = codes_dataset(model, dataset)
    element = next(iter(codes))
    assert set(element) == {"codes", "labels"}
    assert element["codes"].shape == (2, 4, 4)
    np.testing.assert_array_equal(element["labels"], [0, 1])
    # The format a class-conditional prior takes (`fit` on such dicts is
    # tested in test_prior.py).
    logits = _prior(num_classes=2)(element)
    assert logits.shape == (2, 4, 4, 6)


def test_codes_dataset_rejects_unbatched_images():
    model = _vqvae("mse")
    dataset = tf.data.Dataset.from_tensor_slices(_images(2))
    with pytest.raises(ValueError) as error:
        codes_dataset(model, dataset)
    assert str(error.value) == (
        "`image_dataset` must yield batches of images (rank 4); batch it "
        "first. Received: element shape (8, 8, 3)"
    )


def test_codes_dataset_and_utterance_codes_take_audio():
    """The audio pipeline's `{"audio", "speaker"}` batches: speakers are
    the labels unless `with_labels=False`; `utterance_codes` joins each
    utterance's segments."""
    from tests.test_audio_model import TINY_AUDIO, chirp
    from tf_vqvae.data import Utterances, audio_pipeline
    from tf_vqvae.evaluation import utterance_codes

    model = VQVAE(**TINY_AUDIO)
    waves = chirp(batch=3, samples=700)[..., 0]
    model.encode(chirp(batch=1, samples=256))
    utterances = Utterances(
        name="chirps",
        split="train",
        waveforms=[waves[0], waves[1, :100], waves[2, :300]],
        speakers=np.array([2, 0, 1], "int32"),
        speaker_names=("a", "b", "c"),
    )
    batches = audio_pipeline(utterances, 256, 2, seed=0, training=False)
    segments = [
        np.pad(w, (0, -len(w) % 256)).reshape(-1, 256, 1)
        for w in utterances.waveforms
    ]
    expected = [model.encode(s).numpy() for s in segments]
    speakers = np.repeat([2, 0, 1], [len(s) for s in segments])
    elements = list(codes_dataset(model, batches))
    np.testing.assert_array_equal(
        np.concatenate([e["codes"] for e in elements]),
        np.concatenate(expected),
    )
    np.testing.assert_array_equal(
        np.concatenate([e["labels"] for e in elements]), speakers
    )
    plain = codes_dataset(model, batches, with_labels=False)
    np.testing.assert_array_equal(
        np.concatenate(list(plain)), np.concatenate(expected)
    )
    joined = utterance_codes(model, utterances, 256, batch_size=2)
    assert [len(c) for c in joined] == [12, 4, 8]
    for codes, reference in zip(joined, expected):
        np.testing.assert_array_equal(codes, reference.reshape(-1))
    with pytest.raises(ValueError) as error:
        codes_dataset(
            model,
            tf.data.Dataset.from_tensor_slices(waves[..., None]).batch(2),
            with_labels=True,
        )
    assert str(error.value).startswith(
        "`with_labels` needs elements with labels: (images, labels) pairs "
        "or {'audio': ..., 'speaker': ...} dicts. Received: element_spec="
    )


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "mse"])
def test_evaluate_model_matches_bits_per_dim(likelihood):
    model = _vqvae(likelihood)
    prior = _prior()
    images = _images(4)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(3)
    results = evaluate_model(model, dataset, prior=prior)
    # One batch of all images gives the same numbers (sigma is fitted on
    # the whole dataset either way).
    np.testing.assert_allclose(
        results["bits_per_dim_uniform_prior"],
        bits_per_dim(model, None, images),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        results["bits_per_dim_pixelcnn_prior"],
        bits_per_dim(model, prior, images),
        rtol=1e-5,
    )
    reconstructions = np.clip(model(images, training=False).numpy(), 0, 1)
    mse = np.mean((reconstructions - images / 255.0) ** 2)
    np.testing.assert_allclose(results["mse"], mse, rtol=1e-5)
    np.testing.assert_allclose(
        results["psnr"], 10 * np.log10(1 / mse), rtol=1e-5
    )
    counts = np.bincount(model.encode(images).numpy().ravel(), minlength=6)
    p = counts / counts.sum()
    p = p[p > 0]
    np.testing.assert_allclose(
        results["perplexity"], np.exp(-(p * np.log(p)).sum()), rtol=1e-6
    )
    assert results["codebook_usage"] == len(p) / 6
    assert results["num_images"] == 4
    if likelihood == "mse":
        assert results["likelihood"] == "discretized_gaussian"
        np.testing.assert_allclose(
            results["gaussian_scale"],
            fit_gaussian_scale(model, images),
            rtol=1e-5,
        )
    else:
        assert results["likelihood"] == "discretized_logistic"
        assert results["gaussian_scale"] is None
    table = format_evaluation(results)
    assert table.startswith("| metric | value |\n|---|---|\n")
    assert "| num_images | 4 |" in table


# ------------------------------------------ VQVAE discretized logistic
def test_discretized_logistic_vqvae_decodes_the_mean_image():
    model = _vqvae("discretized_logistic")
    images = _images()
    reconstructions = model(images, training=False)
    assert reconstructions.shape == (2, 8, 8, 3)
    assert model.decoder.output_channels == 6
    values = reconstructions.numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_array_equal(
        model.decode(model.encode(images)), reconstructions
    )


def test_discretized_logistic_vqvae_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = VQVAE(**TINY_VQVAE, likelihood="discretized_logistic")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Eight flat images of different grey levels: learnable, unlike noise
    # (whose NLL cannot go below log 256 nats per subpixel).
    levels = (np.arange(8) * 30 + 10).astype("uint8")
    images = np.broadcast_to(levels[:, None, None, None], (8, 8, 8, 3)).copy()
    history = model.fit(images, batch_size=8, epochs=6, verbose=0).history
    loss = history["reconstruction_loss"]
    # The reconstruction term is the NLL in nats per subpixel: positive,
    # and training lowers it.
    assert 0 < loss[-1] < loss[0] - 0.05
    assert model.get_config()["likelihood"] == "discretized_logistic"
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.likelihood == "discretized_logistic"
    np.testing.assert_array_equal(
        restored(images, training=False), model(images, training=False)
    )


def test_invalid_likelihood():
    with pytest.raises(ValueError) as error:
        VQVAE(likelihood="l1")
    assert str(error.value) == (
        "`likelihood` must be 'mse' or 'discretized_logistic'. "
        "Received: likelihood='l1' (of type str)."
    )


# ------------------------------------------------------ API and benchmark
def test_public_names():
    assert tf_vqvae.bits_per_dim is bits_per_dim
    assert tf_vqvae.PixelCNNPrior is PixelCNNPrior
    for name in ("PixelCNNPrior", "bits_per_dim"):
        assert name in tf_vqvae.__all__


@pytest.mark.slow
def test_sampling_benchmark_smoke(tmp_path, monkeypatch):
    # The script imports its sibling `common`, as when run from benchmarks/.
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_sampling", os.path.join(REPO, "benchmarks", "bench_sampling.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = os.path.join(tmp_path, "sampling.md")
    assert bench.main(["--tiny", "--out", out]) == 0
    with open(out) as f:
        table = f.read()
    assert (
        "| grid | naive (s) | cached (s) | speed-up (median) | same codes "
        "| TFP PixelCNN (s) | TFP ÷ cached |" in table
    )
    row = next(line for line in table.splitlines() if line.startswith("| 4x4"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4] == "yes"
    # Three TFP timings and a ratio: the peer really sampled.
    assert len(cells[5].split(" / ")) == 3 and cells[6].endswith("x")
    assert "Parameters: tf_vqvae prior" in table
    # The WaveNet part: naive and cached at each length, the same codes.
    assert (
        "| codes | naive (s) | cached (s) | speed-up (median) "
        "| cached ms per code | same codes |" in table
    )
    row = next(line for line in table.splitlines() if line.startswith("| 16 "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3].endswith("x") and cells[5] == "yes"


@pytest.mark.parametrize("num_levels", [1, 3], ids=["one-level", "3-levels"])
def test_level_code_counts_match_numpy(num_levels):
    rng = np.random.default_rng(num_levels)
    shape = (4, 3, 5) + ((num_levels,) if num_levels > 1 else ())
    codes = rng.integers(0, 7, size=shape).astype("int32")
    counts = level_code_counts(codes, 7, num_levels).numpy()
    per_level = codes.reshape(-1, num_levels)
    expected = [
        np.bincount(per_level[:, i], minlength=7) for i in range(num_levels)
    ]
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize(
    "quantizer, quantizer_options",
    [("fsq", {"levels": (3, 2)}), ("rvq", {"num_quantizers": 3})],
    ids=["fsq", "rvq-3-levels"],
)
def test_evaluate_model_usage_and_bits_through_the_contract(
    quantizer, quantizer_options
):
    """Pooled and per-level usage against numpy on the model's own codes;
    the uniform prior costs `levels * log2(K)` bits per code position."""
    keras.utils.set_random_seed(0)
    model = VQVAE(
        **TINY_VQVAE,
        quantizer=quantizer,
        quantizer_options=quantizer_options,
        data_init=None,
    )
    images = _images(count=6)
    model(images)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    results = evaluate_model(model, dataset)

    codes = np.asarray(model.encode(images))
    levels = model.quantizer.num_levels
    k = model.num_embeddings
    assert (k, levels) == ((6, 1) if quantizer == "fsq" else (6, 3))
    per_level = codes.reshape(-1, levels)

    def usage(values):
        counts = np.bincount(values, minlength=k)
        p = counts[counts > 0] / counts.sum()
        return np.exp(-np.sum(p * np.log(p))), np.mean(counts > 0)

    perplexity, used = usage(per_level.reshape(-1))
    assert results["num_levels"] == levels
    np.testing.assert_allclose(results["perplexity"], perplexity, rtol=1e-6)
    assert results["codebook_usage"] == used
    if levels > 1:
        for i in range(levels):
            p, u = usage(per_level[:, i])
            np.testing.assert_allclose(
                results["level_perplexity"][i], p, rtol=1e-6
            )
            assert results["level_codebook_usage"][i] == u
    else:
        assert "level_perplexity" not in results
    assert results["bits_per_position_uniform_prior"] == levels * math.log2(k)
    positions = 4 * 4  # 8x8 images, one downsampling
    dims = 8 * 8 * 3
    np.testing.assert_allclose(
        results["bits_per_dim_uniform_prior"]
        - results["reconstruction_bits_per_dim"],
        positions * levels * math.log2(k) / dims,
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "quantizer, quantizer_options, num_embeddings",
    [
        pytest.param(
            "fsq",
            {"levels": (8, 8, 8, 8, 4)},
            512,
            id="fsq",
            marks=pytest.mark.slow,
        ),
        pytest.param("lfq", {}, 2**14, id="lfq"),
    ],
)
def test_prior_over_one_index_per_position_at_k_16384(
    quantizer, quantizer_options, num_embeddings
):
    """A PixelCNN prior trains, samples and scores the codes of FSQ and LFQ
    models with K = 16384 (the logits of a 4x4 grid are 1 MiB per grid)."""
    keras.utils.set_random_seed(0)
    model = VQVAE(
        **{
            **TINY_VQVAE,
            "num_embeddings": num_embeddings,
            "num_downsamples": 2,
        },
        quantizer=quantizer,
        quantizer_options=quantizer_options,
    )
    images = _images(count=8)
    images = np.concatenate([images, images], axis=1)
    images = np.concatenate([images, images], axis=2)  # 16x16
    model(images)
    assert model.num_embeddings == 2**14
    codes = np.asarray(model.encode(images))
    assert codes.shape == (8, 4, 4) and codes.max() < 2**14
    prior = PixelCNNPrior(
        num_embeddings=model.num_embeddings,
        grid_shape=(4, 4),
        num_hiddens=8,
        num_layers=1,
    )
    prior.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = prior.fit(codes, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    samples = np.asarray(prior.distribution().sample(2, seed=0))
    assert samples.shape == (2, 4, 4)
    assert 0 <= samples.min() and samples.max() < 2**14
    results = evaluate_model(
        model, tf.data.Dataset.from_tensor_slices(images).batch(8), prior
    )
    assert results["bits_per_position_uniform_prior"] == 14.0
    assert np.isfinite(results["bits_per_dim_pixelcnn_prior"])


# --------------------------------------------------------- nearest positions
def _numpy_nearest(model, images, codes, count, cosine):
    """The n nearest positions per code, recounted in float64 numpy."""
    z = np.asarray(model.latents(images), "float64")
    grid = z.shape[1:-1]
    z = z.reshape(-1, z.shape[-1])
    levels = model.quantizer.num_levels > 1
    query = np.asarray(codes)[:, None] if levels else np.asarray(codes)
    vectors = np.asarray(model.quantizer.lookup(query), "float64")
    if cosine:
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        vectors = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    distances = ((z[None] - vectors[:, None]) ** 2).sum(-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :count]
    positions = np.stack(np.unravel_index(order, (len(images), *grid)), -1)
    return positions, np.take_along_axis(distances, order, axis=1)


@pytest.mark.parametrize(
    "quantizer, options",
    [
        ("vq", {}),
        ("vq", {"distance": "cosine"}),
        ("rvq", {"num_quantizers": 2}),
        ("fsq", {"levels": (3, 3)}),
    ],
    ids=["vq", "vq-cosine", "rvq", "fsq"],
)
def test_nearest_positions_are_the_numpy_nearest(quantizer, options):
    from tf_vqvae.evaluation import nearest_positions

    keras.utils.set_random_seed(0)
    model = VQVAE(
        **{**TINY_VQVAE, "num_embeddings": 9},
        quantizer=quantizer,
        quantizer_options=options,
    )
    images = _images(count=7, seed=3)
    model(images)
    codes = [4, 0, 8]
    # Batches of 3 images (48 positions): each code's 10 nearest are merged
    # across batches.
    batches = [images[start : start + 3] for start in range(0, 7, 3)]
    positions, distances = nearest_positions(model, batches, codes, 10)
    expected, expected_distances = _numpy_nearest(
        model, images, codes, 10, cosine="distance" in options
    )
    assert positions.shape == (3, 10, 3) and distances.shape == (3, 10)
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5)
    # More than there are: every position once, nearest first (numpy's
    # order up to float32 rounding: some positions' distances agree to 1e-7).
    every, _ = nearest_positions(model, [images], codes[:1], 1000)
    assert every.shape == (1, 7 * 4 * 4, 3)
    assert len({tuple(row) for row in every[0]}) == 7 * 4 * 4
    ranked, all_distances = _numpy_nearest(
        model, images, codes[:1], 1000, cosine="distance" in options
    )
    by_position = dict(zip(map(tuple, ranked[0]), all_distances[0]))
    in_order = np.array([by_position[tuple(row)] for row in every[0]])
    assert np.all(np.diff(in_order) >= -1e-6 * in_order[1:])


@pytest.mark.parametrize(
    "args, message",
    [
        (
            dict(codes=[0], count=0),
            "`count` must be a positive integer. "
            "Received: count=0 (of type int).",
        ),
        (
            dict(codes=[6], count=2),
            "`codes` must be in [0, 6) (num_embeddings=6). Received: codes=[6]",
        ),
        (
            dict(codes=[0], count=2, batches=[]),
            "`batches` must hold at least one image.",
        ),
    ],
    ids=["count", "codes", "empty"],
)
def test_nearest_positions_bad_input(args, message):
    from tf_vqvae.evaluation import nearest_positions

    model = _vqvae("mse")
    args = {"batches": [_images()], **args}
    with pytest.raises(ValueError) as info:
        nearest_positions(model, **args)
    assert str(info.value) == message


def test_audio_evaluation_errors_keep_their_message_on_later_batches():
    """The loops run batches after the first as graphs; a bad speaker id
    or an out-of-range waveform there still raises the eager `ValueError`
    with its text (not a graph assertion)."""
    from tests.test_audio_model import TINY_AUDIO, chirp
    from tf_vqvae.data import Utterances
    from tf_vqvae.evaluation import evaluate_audio_model, utterance_codes

    model = VQVAE(**TINY_AUDIO, num_speakers=2)
    waves = chirp(batch=4, samples=256)
    batches = [
        {"audio": waves[:2], "speaker": np.array([0, 1], "int32")},
        {"audio": waves[2:], "speaker": np.array([1, 2], "int32")},
    ]
    with pytest.raises(ValueError) as raised:
        evaluate_audio_model(model, batches)
    assert str(raised.value) == (
        "`speaker` ids must be in [0, num_speakers=2). "
        "Received: ids from 1 to 2."
    )
    loud = waves[:, :, 0].copy()
    loud[3] *= 3.0
    utterances = Utterances(
        name="chirps",
        split="train",
        waveforms=list(loud),
        speakers=np.array([0, 1, 0, 1], "int32"),
        speaker_names=("a", "b"),
    )
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        utterance_codes(model, utterances, 256, batch_size=2)


# ------------------------------------------------------- argument mistakes
@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, "0.1"])
def test_gaussian_scale_must_be_positive_and_finite(scale):
    model = _vqvae("mse")
    images = _images()
    expected = (
        "`gaussian_scale` must be a positive finite number or None. "
        f"Received: gaussian_scale={scale!r} (of type {type(scale).__name__})."
    )
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    for call in (
        lambda: bits_per_dim(model, None, images, gaussian_scale=scale),
        lambda: evaluate_model(model, dataset, gaussian_scale=scale),
        lambda: tf_vqvae.evaluation.reconstruction_log_prob(
            model, images, gaussian_scale=scale
        ),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == expected


def test_a_given_gaussian_scale_is_used():
    model = _vqvae("mse")
    images = _images()
    sigma = fit_gaussian_scale(model, images)
    np.testing.assert_allclose(
        bits_per_dim(model, None, images, gaussian_scale=np.float32(sigma)),
        bits_per_dim(model, None, images),
        rtol=1e-5,
    )


def test_bits_per_dim_refuses_what_is_no_prior():
    model = _vqvae("mse")
    images = _images()
    # The images slipped into the prior's place.
    with pytest.raises(TypeError) as info:
        bits_per_dim(model, images, None)
    assert str(info.value) == (
        "`prior` must be a tf_vqvae prior (a tf_vqvae.contracts.CodePrior, "
        "e.g. PixelCNNPrior or WaveNetPrior) or None. Received: "
        "prior=<array of shape (2, 8, 8, 3)> (of type ndarray)."
    )
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    for call in (
        lambda: bits_per_dim(model, model, images),
        lambda: evaluate_model(model, dataset, prior=model),
    ):
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value) == (
            "`prior` must be a tf_vqvae prior (a tf_vqvae.contracts."
            "CodePrior, e.g. PixelCNNPrior or WaveNetPrior) or None. "
            f"Received: prior={model!r} (of type VQVAE)."
        )


def test_image_and_audio_functions_refuse_the_other_modality():
    from tests.test_audio_model import TINY_AUDIO, chirp
    from tf_vqvae.evaluation import bits_per_sample, evaluate_audio_model

    audio_model = VQVAE(**TINY_AUDIO)
    waves = chirp(batch=2, samples=128)
    audio_model(waves)
    image_model = _vqvae("mse")
    images = _images()
    cases = [
        (
            lambda: bits_per_dim(audio_model, None, waves),
            "`vqvae` must be an image model (modality='image') for "
            "`bits_per_dim`; for audio models use `bits_per_sample`. "
            "Received: a model with modality='audio'.",
        ),
        (
            lambda: evaluate_model(
                audio_model, tf.data.Dataset.from_tensors(waves)
            ),
            "`vqvae` must be an image model (modality='image') for "
            "`evaluate_model`; for audio models use `evaluate_audio_model`. "
            "Received: a model with modality='audio'.",
        ),
        (
            lambda: bits_per_sample(image_model, None, waves),
            "`vqvae` must be an audio model (modality='audio') for "
            "`bits_per_sample`; for image models use `bits_per_dim`. "
            "Received: a model with modality='image'.",
        ),
        (
            lambda: evaluate_audio_model(
                image_model, tf.data.Dataset.from_tensors(images)
            ),
            "`vqvae` must be an audio model (modality='audio') for "
            "`evaluate_audio_model`; for image models use `evaluate_model`. "
            "Received: a model with modality='image'.",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message


def test_bits_per_dim_and_evaluate_model_refuse_an_unbuilt_model():
    model = VQVAE(**TINY_VQVAE)
    images = _images()
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    for name, call in (
        ("bits_per_dim", lambda: bits_per_dim(model, None, images)),
        ("evaluate_model", lambda: evaluate_model(model, dataset)),
        ("codes_dataset", lambda: codes_dataset(model, dataset)),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == (
            "`vqvae` must be built (called on images once, or loaded) "
            f"before `{name}`."
        )
    assert not model.built
