"""Likelihood of the whole model in bits/dim, codes datasets for the prior,
and the numbers `vqvae evaluate` reports.

The VQ-VAE bound (van den Oord et al., 2017):

    log p(x) >= log p(x | z_q(x)) + log p(z_q(x))

    bits/dim = -(log p(x | z_q(x)) + log p(z_q(x))) / (D * ln 2)

with `D` = pixels x channels of one image and `p(z)` either the uniform
prior over the `N` codes of a grid (`log p(z) = -N log K`; a quantizer with
`L` levels, residual VQ, has `N L` codes per grid: `L log2 K` bits per
position) or a trained `PixelCNNPrior`. `log p(x | z)` needs a discrete
likelihood over the 8-bit pixel values:

- `VQVAE(likelihood="discretized_logistic")`: the decoder's own discretized
  logistic (the likelihood it was trained with).
- `VQVAE(likelihood="mse")`: MSE training is maximum likelihood under a
  Gaussian decoder of fixed variance, so the pixels are scored under a
  discretized Gaussian `N(decode(z), sigma^2)`, with `sigma` given or, by
  default, fitted by maximum likelihood on the evaluated images
  (`sqrt(mean squared error)`; one scalar fitted on the test data, so the
  number is slightly optimistic).

Every result says which of the two was used (`"likelihood"`).

Audio models (`VQVAE(modality="audio")`, `likelihood="mu_law"` or
`"mu_law_logistic"`) have a categorical or a discretized logistic mixture
over the 8-bit mu-law value of each sample, so `log p(x | z)` is exact for
the mu-law-quantized waveform; `bits_per_sample` and
`reconstruction_bits_per_sample` report it per sample (`D` = samples).

The functions take any `tf_vqvae.contracts.CodeModel` (and `CodePrior`) and
use only the contracts' members; after each loop's first batch they run the
models' calls as graphs (`tf.function`), so those must trace, as the
contracts say.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tf_vqvae import likelihoods, sampling
from tf_vqvae.arg_checks import describe, is_number
from tf_vqvae.contracts import CodePrior, prior_event_shape
from tf_vqvae.data import audio_pipeline
from tf_vqvae.speech_metrics import log_mel_distance
from tf_vqvae.vqvae import as_waveforms, to_unit_range

LN2 = math.log(2.0)


def _graph(fn):
    """`fn` for every batch of an evaluation loop: its first call eager, the
    rest a `tf.function` (one trace per input shape).

    A model's forward pass dispatched op by op in eager mode is 3x (encoder)
    to 8x (a WaveNet prior's `log_prob`) slower on CPU than its graph. The
    first call stays eager so that an unbuilt model is built (and its
    initialisers run) outside any trace and the first batch's bad inputs
    raise the models' own `ValueError`s; AutoGraph is off so that errors
    raised while tracing keep their text.
    """
    graph = tf.function(fn, reduce_retracing=True, autograph=False)
    calls = 0

    def call(*args, **kwargs):
        nonlocal calls
        calls += 1
        return (fn if calls == 1 else graph)(*args, **kwargs)

    return call


def _check_speakers(vqvae, speakers) -> None:
    """The eager `decode`'s error for speaker ids outside the model's range,
    for every batch (the graphs would only assert)."""
    if speakers is None or not vqvae.num_speakers:
        return
    ids = np.asarray(speakers)
    if ids.size and not (ids.min() >= 0 and ids.max() < vqvae.num_speakers):
        raise ValueError(
            f"`speaker` ids must be in [0, num_speakers={vqvae.num_speakers})."
            f" Received: ids from {ids.min():g} to {ids.max():g}."
        )


def _check_prior(vqvae, prior, codes: tf.Tensor | None = None) -> None:
    """`prior` is `None` or a `CodePrior`; with `codes`, one over them."""
    if prior is None:
        return
    if not isinstance(prior, CodePrior):
        # Arrays (images slipped into `prior`'s place) by shape, not repr.
        shown = (
            f"Received: prior=<array of shape {tuple(prior.shape)}> (of type "
            f"{type(prior).__name__})."
            if hasattr(prior, "shape") and hasattr(prior, "dtype")
            else describe("prior", prior)
        )
        raise TypeError(
            "`prior` must be a tf_vqvae prior (a tf_vqvae.contracts."
            f"CodePrior, e.g. PixelCNNPrior or WaveNetPrior) or None. {shown}"
        )
    if codes is None:
        return
    shape = tuple(codes.shape[1:])
    levels = vqvae.quantizer.num_levels
    grid = shape[:-1] if levels > 1 else shape
    if (
        prior.num_embeddings != vqvae.num_embeddings
        or prior_event_shape(prior) != shape
    ):
        of_levels = f" and num_levels={levels}" if levels > 1 else ""
        prior_levels = (
            f", prior.num_levels={getattr(prior, 'num_levels', 1)}"
            if levels > 1 or getattr(prior, "num_levels", 1) > 1
            else ""
        )
        raise ValueError(
            "`prior` must model the VQ-VAE's codes: num_embeddings="
            f"{vqvae.num_embeddings} and grid_shape={grid}{of_levels}. "
            f"Received: prior.num_embeddings={prior.num_embeddings}, "
            f"prior.grid_shape={tuple(prior.grid_shape)}{prior_levels}."
        )


def _check_modality(vqvae, modality: str, function: str, other: str) -> None:
    """`vqvae` is a `modality` model, else a line pointing to `other`, the
    function for the other modality."""
    if vqvae.modality != modality:
        raise ValueError(
            f"`vqvae` must be an {modality} model (modality={modality!r}) for "
            f"`{function}`; for {vqvae.modality} models use `{other}`. "
            f"Received: a model with modality={vqvae.modality!r}."
        )


def _check_built(vqvae, function: str) -> None:
    if vqvae.example_shape is None:
        raise ValueError(
            "`vqvae` must be built (called on images once, or loaded) "
            f"before `{function}`."
        )


def _check_gaussian_scale(gaussian_scale) -> None:
    """`None` (fitted) or a positive finite sigma."""
    if gaussian_scale is None:
        return
    number = is_number(gaussian_scale) or isinstance(
        gaussian_scale, np.floating
    )
    if not (number and 0 < gaussian_scale < math.inf):
        raise ValueError(
            "`gaussian_scale` must be a positive finite number or None. "
            f"{describe('gaussian_scale', gaussian_scale)}"
        )


def likelihood_name(vqvae) -> str:
    """`"discretized_logistic"` or `"discretized_gaussian"`: the pixel
    likelihood bits/dim uses for this model."""
    if vqvae.likelihood in (
        "discretized_logistic",
        "mu_law",
        "mu_law_logistic",
    ):
        return vqvae.likelihood
    return "discretized_gaussian"


def fit_gaussian_scale(vqvae, images) -> float:
    """The maximum-likelihood sigma of a Gaussian decoder on `images`:
    `sqrt(mean((decode(encode(x)) - x)^2))` on the 8-bit grid."""
    images = to_unit_range(images)
    mean = vqvae.decode(vqvae.encode(images))
    error = mean - likelihoods.pixel_values(images)
    return float(tf.sqrt(tf.reduce_mean(tf.square(error))))


def reconstruction_log_prob(
    vqvae, images, codes=None, gaussian_scale: float | None = None
) -> tf.Tensor:
    """`log p(x | z_q(x))` per image in nats: float32 `(batch,)`.

    Args:
        vqvae: a built `VQVAE`.
        images: `(batch, height, width, channels)`, [0, 1] float or uint8.
        codes: `vqvae.encode(images)` if already computed.
        gaussian_scale: sigma for `likelihood="mse"` models (default: fitted
            on `images`, see `fit_gaussian_scale`); ignored otherwise.

    Raises:
        ValueError: a `gaussian_scale` that is not a positive number.
    """
    _check_gaussian_scale(gaussian_scale)
    images = to_unit_range(images)
    if codes is None:
        codes = vqvae.encode(images)
    if vqvae.likelihood == "discretized_logistic":
        per_pixel = likelihoods.logistic_pixel_log_prob(
            images, vqvae.decoder_outputs(codes), images.shape[-1]
        )
    else:
        if gaussian_scale is None:
            gaussian_scale = fit_gaussian_scale(vqvae, images)
        per_pixel = likelihoods.discretized_gaussian_log_prob(
            images, vqvae.decode(codes), gaussian_scale
        )
    axes = list(range(1, per_pixel.shape.rank))
    return tf.reduce_sum(per_pixel, axis=axes)


def waveform_log_prob(vqvae, waveforms, codes=None, speakers=None):
    """`log p(x | z_q(x))` per waveform in nats under an audio model's mu-law
    likelihood (categorical or logistic mixture): float32 `(batch,)`.

    Args:
        vqvae: a built audio `VQVAE` (`likelihood="mu_law"` or
            `"mu_law_logistic"`).
        waveforms: `(batch, samples, 1)`, float in [-1, 1].
        codes: `vqvae.encode(waveforms)` if already computed.
        speakers: int speaker ids `(batch,)` for a model with speakers.
    """
    if vqvae.likelihood not in ("mu_law", "mu_law_logistic"):
        raise ValueError(
            "`vqvae` must be an audio model (likelihood='mu_law' or "
            "'mu_law_logistic'). "
            f"Received: a model with likelihood={vqvae.likelihood!r}."
        )
    waveforms = as_waveforms(waveforms)
    if codes is None:
        codes = vqvae.encode(waveforms)
    # A WaveNet decoder's logits are teacher forced on the waveforms (exact
    # log p(x | z)); the parallel decoder does not read them.
    logits = vqvae.decoder_outputs(codes, speakers, waveforms=waveforms)
    per_sample = likelihoods.audio_log_prob(
        vqvae.likelihood, waveforms[..., 0], logits
    )
    return tf.reduce_sum(per_sample, axis=1)


def reconstruction_bits_per_sample(vqvae, waveforms, speakers=None) -> float:
    """`-log2 p(x | z_q(x))` per sample, averaged over the waveforms: the
    bits an audio model's decoder needs for each 8-bit mu-law sample given
    the codes (8 for a uniform categorical).

    Args:
        vqvae: a built audio `VQVAE` (`likelihood="mu_law"` or
            `"mu_law_logistic"`).
        waveforms: `(batch, samples, 1)`, float in [-1, 1].
        speakers: int speaker ids `(batch,)` for a model with speakers.

    Returns:
        A Python float.
    """
    waveforms = as_waveforms(waveforms)
    log_px = waveform_log_prob(vqvae, waveforms, speakers=speakers)
    samples = int(waveforms.shape[1])
    return float(-tf.reduce_mean(log_px) / (samples * LN2))


def bits_per_sample(
    vqvae, prior, waveforms, speakers=None, labels=None
) -> float:
    """An audio model's negative log-likelihood bound in bits per sample.

    `-(log p(x | z_q(x)) + log p(z_q(x))) / (samples ln 2)`, averaged over
    the waveforms: `bits_per_dim` for audio, with the mu-law categorical as
    `p(x | z)`.

    Args:
        vqvae: a built audio `VQVAE` (`likelihood="mu_law"` or
            `"mu_law_logistic"`).
        prior: a prior over its codes (`tf_vqvae.contracts.CodePrior`), or
            `None` for the uniform prior `log p(z) = -N log K`.
        waveforms: `(batch, samples, 1)`, float in [-1, 1].
        speakers: int speaker ids `(batch,)` for a model with speakers.
        labels: class labels `(batch,)` for a conditional prior.

    Returns:
        A Python float.

    Raises:
        TypeError: a `prior` that is no `CodePrior`.
        ValueError: an image model, or a prior whose codebook size or grid
            does not match.
    """
    _check_modality(vqvae, "audio", "bits_per_sample", "bits_per_dim")
    _check_prior(vqvae, prior)
    waveforms = as_waveforms(waveforms)
    codes = vqvae.encode(waveforms)
    _check_prior(vqvae, prior, codes)
    log_px = waveform_log_prob(vqvae, waveforms, codes, speakers)
    log_pz = prior_log_prob(prior, codes, vqvae.num_embeddings, labels)
    samples = int(waveforms.shape[1])
    return float(-tf.reduce_mean(log_px + log_pz) / (samples * LN2))


def level_code_counts(codes, num_embeddings: int, num_levels: int):
    """How often each code occurs at each level: float32 `[num_levels, K]`.

    `codes` are a `tf_vqvae.contracts.Quantizer`'s: `(batch, *grid)` for
    one level, `(batch, *grid, num_levels)` for several.
    """
    codes = tf.reshape(tf.convert_to_tensor(codes, tf.int32), [-1, num_levels])
    offsets = tf.range(num_levels, dtype=tf.int32) * num_embeddings
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(codes, tf.float32),
        codes + offsets,
        num_levels * num_embeddings,
    )
    return tf.reshape(counts, [num_levels, num_embeddings])


def nearest_positions(
    model, batches, codes, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The latent positions whose encoder outputs are nearest to each code.

    What a code "means": for each code `k` of `codes`, the positions of the
    images whose `z_e` (`model.latents`) is nearest to the code's vector
    (`model.quantizer.lookup(k)`; for a quantizer with several levels,
    residual VQ, code `k` of the first level), whatever code they were
    given. Nearest by the quantizer's distance: squared L2, or for a
    quantizer with `distance == "cosine"` squared L2 between the
    l2-normalised vectors (`2 - 2 cos`, the same order as the cosine
    similarity). For FSQ and LFQ the code's vector is its grid point as
    `lookup` returns it (projected out when the layer projects).

    The batches are encoded one at a time and each code keeps only its
    `count` nearest positions so far (merged batch by batch): memory grows
    with the batch size and `len(codes) * count`, never with the number of
    positions times K. Ties go to the earlier position.

    Args:
        model: a built `tf_vqvae.contracts.CodeModel`.
        batches: an iterable of image batches `(batch, *spatial, channels)`
            of one size (uint8, or float in [0, 1]), e.g. a batched
            `tf.data.Dataset`. Positions count the images across batches,
            in order.
        codes: the codes to rank positions for, ints in
            `[0, num_embeddings)`.
        count: positions per code.

    Returns:
        `(positions, distances)`: int64 `(len(codes), m, 1 + grid_rank)`,
        rows `(image, *grid index)` nearest first, with `m = min(count,
        number of positions)`; float32 `(len(codes), m)`, their distances.

    Raises:
        ValueError: for a `count` that is not a positive integer, codes
            outside `[0, num_embeddings)`, or no images.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(
            "`count` must be a positive integer. "
            f"Received: count={count!r} (of type {type(count).__name__})."
        )
    codes = np.asarray(codes, np.int64).reshape(-1)
    k = int(model.num_embeddings)
    if np.any((codes < 0) | (codes >= k)):
        raise ValueError(
            f"`codes` must be in [0, {k}) (num_embeddings={k}). "
            f"Received: codes={codes.tolist()}"
        )
    quantizer = model.quantizer
    first_level = codes[:, None] if quantizer.num_levels > 1 else codes
    vectors = tf.cast(quantizer.lookup(first_level.astype(np.int32)), "float32")
    cosine = getattr(quantizer, "distance", "l2") == "cosine"
    if cosine:
        vectors = tf.math.l2_normalize(vectors, axis=-1)
    best = np.zeros((len(codes), 0), np.float32)
    where = np.zeros((len(codes), 0), np.int64)
    num_images, grid = 0, None
    for images in batches:
        latents = model.latents(images)
        grid = tuple(latents.shape[1:-1])
        num_images += int(latents.shape[0])
        flat = tf.reshape(latents, [-1, latents.shape[-1]])
        if cosine:
            flat = tf.math.l2_normalize(flat, axis=-1)
        # One code at a time: a `[rows, D]` difference, never `[rows, S, D]`.
        distances = np.empty((len(codes), flat.shape[0]), np.float32)
        for row, vector in enumerate(vectors):
            distances[row] = tf.reduce_sum(tf.square(flat - vector), axis=-1)
        start = (num_images - int(latents.shape[0])) * int(np.prod(grid))
        indices = start + np.arange(distances.shape[1])
        best = np.concatenate([best, distances], axis=1)
        where = np.concatenate(
            [where, np.broadcast_to(indices, distances.shape)], axis=1
        )
        # Nearest first, the earlier position first among equals.
        order = np.lexsort((where, best), axis=-1)[:, :count]
        best = np.take_along_axis(best, order, axis=1)
        where = np.take_along_axis(where, order, axis=1)
    if num_images == 0:
        raise ValueError("`batches` must hold at least one image.")
    positions = np.stack(np.unravel_index(where, (num_images, *grid)), -1)
    return positions.astype(np.int64), best


def _usage(counts: np.ndarray) -> tuple[float, float]:
    """Perplexity and used fraction of one code histogram."""
    probabilities = counts / max(counts.sum(), 1.0)
    used = probabilities > 0
    entropy = -np.sum(probabilities[used] * np.log(probabilities[used]))
    return float(np.exp(entropy)), float(used.mean())


def _code_usage(counts: np.ndarray, num_embeddings: int) -> dict:
    """The code statistics of an evaluation from its `(num_levels, K)`
    code counts: `num_levels`, `bits_per_position_uniform_prior`, and the
    `perplexity` and `codebook_usage` of the codes pooled over the levels."""
    num_levels = counts.shape[0]
    perplexity, usage = _usage(counts.sum(axis=0))
    return {
        "num_levels": num_levels,
        "bits_per_position_uniform_prior": num_levels
        * math.log2(num_embeddings),
        "perplexity": perplexity,
        "codebook_usage": usage,
    }


def prior_log_prob(prior, codes, num_embeddings: int, labels=None):
    """`log p(z)` per code grid in nats: float32 `(batch,)`.

    `prior=None` is the uniform prior, `-N log K` for `N` codes per grid
    (positions times levels).
    """
    codes = tf.convert_to_tensor(codes, tf.int32)
    if prior is None:
        num_codes = int(np.prod(codes.shape[1:]))
        batch = tf.shape(codes)[0]
        return tf.fill([batch], -num_codes * math.log(num_embeddings))
    distribution = prior.distribution(labels=labels)
    return tf.cast(distribution.log_prob(codes), tf.float32)


def _code_log_prob_sums(vqvae, prior):
    """A function of a batch of codes and its labels: `log p(z)` in nats
    summed over the batch under the uniform prior, and under `prior` (0.0
    without one), which gets the labels when it is class conditional."""
    prior_sum = None
    if prior is not None:
        prior_sum = _graph(
            lambda codes, labels: tf.reduce_sum(
                prior_log_prob(prior, codes, vqvae.num_embeddings, labels)
            )
        )

    def sums(codes, labels) -> tuple[float, float]:
        uniform = float(
            tf.reduce_sum(prior_log_prob(None, codes, vqvae.num_embeddings))
        )
        if prior_sum is None:
            return uniform, 0.0
        labels = labels if prior.num_classes is not None else None
        return uniform, float(prior_sum(codes, labels))

    return sums


def bits_per_dim(
    vqvae, prior, images, labels=None, gaussian_scale: float | None = None
) -> float:
    """The VQ-VAE's negative log-likelihood bound in bits per dimension.

    `-(log p(x | z_q(x)) + log p(z_q(x))) / (D ln 2)`, averaged over the
    images, with `D` = height x width x channels (see the module docstring
    for the pixel likelihood used, `likelihood_name(vqvae)`).

    Args:
        vqvae: a built `VQVAE`.
        prior: a `PixelCNNPrior` over the VQ-VAE's codes, or `None` for the
            uniform prior `log p(z) = -N log K`.
        images: `(batch, height, width, channels)`, [0, 1] float or uint8.
        labels: class labels `(batch,)` for a class-conditional prior.
        gaussian_scale: sigma for `likelihood="mse"` models (default: fitted
            on `images`).

    Returns:
        A Python float.

    Raises:
        TypeError: a `prior` that is no `CodePrior`.
        ValueError: an audio or unbuilt model, a `gaussian_scale` that is
            not a positive number, or a prior whose codebook size or grid
            does not match.
    """
    _check_modality(vqvae, "image", "bits_per_dim", "bits_per_sample")
    _check_built(vqvae, "bits_per_dim")
    _check_prior(vqvae, prior)
    _check_gaussian_scale(gaussian_scale)
    images = to_unit_range(images)
    codes = vqvae.encode(images)
    _check_prior(vqvae, prior, codes)
    log_px = reconstruction_log_prob(vqvae, images, codes, gaussian_scale)
    log_pz = prior_log_prob(prior, codes, vqvae.num_embeddings, labels)
    dims = int(np.prod(images.shape[1:]))
    return float(-tf.reduce_mean(log_px + log_pz) / (dims * LN2))


def _split_element(element):
    if isinstance(element, dict):
        return element["audio"], element.get("speaker")
    if isinstance(element, (tuple, list)):
        if len(element) != 2:
            raise ValueError(
                "Dataset elements must be images or (images, labels). "
                f"Received: an element of {len(element)} parts."
            )
        return element[0], element[1]
    return element, None


def codes_dataset(
    vqvae,
    image_dataset: tf.data.Dataset,
    cache_path: str | None = None,
    with_labels: bool | None = None,
) -> tf.data.Dataset:
    """A dataset of codes for a prior's `fit`, encoded once and cached.

    Args:
        vqvae: a built `VQVAE` (any `tf_vqvae.contracts.CodeModel`).
        image_dataset: batches of images `(batch, height, width, channels)`
            or `(images, labels)` pairs; for an audio model, batches of
            waveforms `(batch, samples, 1)` or the dicts of
            `tf_vqvae.data.audio_pipeline`, `{"audio": ..., "speaker":
            (batch,)}`, whose speakers are the labels.
        cache_path: file prefix for `tf.data.Dataset.cache`: the first full
            pass runs the encoder and writes the codes there, later epochs
            (and later runs) read them back. `None` caches in memory.
        with_labels: keep the labels (pairs' labels, dicts' speakers) as
            the prior's class labels; `None`: when the elements have them.

    Returns:
        A dataset of int32 codes `(batch, *code_grid)`, or of `{"codes":
        ..., "labels": ...}` dicts with labels (the input format of a
        class-conditional prior).

    Raises:
        ValueError: an unbuilt model, unbatched elements, or `with_labels`
            for elements without labels.
    """
    spec, label_spec = _split_element(image_dataset.element_spec)
    _check_built(vqvae, "codes_dataset")
    # One example is `example_shape`; a batch has one axis more.
    rank = len(vqvae.example_shape) + 1
    if spec.shape.rank != rank:
        raise ValueError(
            f"`image_dataset` must yield batches of images (rank {rank}); "
            f"batch it first. Received: element shape {tuple(spec.shape)}"
        )
    if with_labels and label_spec is None:
        raise ValueError(
            "`with_labels` needs elements with labels: (images, labels) "
            "pairs or {'audio': ..., 'speaker': ...} dicts. "
            f"Received: element_spec={image_dataset.element_spec}"
        )
    keep_labels = label_spec is not None and with_labels is not False

    def encode(*element):
        images, labels = _split_element(
            element if len(element) > 1 else element[0]
        )
        codes = vqvae.encode(images)
        if not keep_labels:
            return codes
        return {"codes": codes, "labels": tf.cast(labels, tf.int32)}

    codes = image_dataset.map(encode, num_parallel_calls=1)
    return codes.cache(cache_path or "").prefetch(tf.data.AUTOTUNE)


def evaluate_model(
    vqvae,
    dataset: tf.data.Dataset,
    prior=None,
    gaussian_scale: float | None = None,
) -> dict:
    """The numbers of `vqvae evaluate`, over a whole dataset.

    Args:
        vqvae: a built `VQVAE`.
        dataset: batches of images, or `(images, labels)` pairs (labels are
            used by a class-conditional prior).
        prior: optional `PixelCNNPrior` over the VQ-VAE's codes.
        gaussian_scale: sigma for `likelihood="mse"` models; default: fitted
            on the whole dataset (one extra pass).

    Returns:
        A dict of Python numbers and strings: `likelihood` (the pixel
        likelihood of the bits/dim numbers), `gaussian_scale` (sigma, or
        `None`), `num_images`, `bits_per_dim_uniform_prior`,
        `bits_per_dim_pixelcnn_prior` (`None` without a prior),
        `reconstruction_bits_per_dim` (`-log p(x|z)` alone), `psnr` (dB, of
        reconstructions clipped to [0, 1]), `mse`, `num_levels`,
        `bits_per_position_uniform_prior` (`num_levels * log2 K`),
        `perplexity` and `codebook_usage` (codes pooled over the dataset
        and the levels), and, for more than one level, the lists
        `level_perplexity` and `level_codebook_usage` (each level alone).

    Raises:
        TypeError: a `prior` that is no `CodePrior`.
        ValueError: an audio or unbuilt model, a `gaussian_scale` that is
            not a positive number, an empty dataset, or a prior whose
            codebook size or grid does not match.
    """
    _check_modality(vqvae, "image", "evaluate_model", "evaluate_audio_model")
    _check_built(vqvae, "evaluate_model")
    _check_prior(vqvae, prior)
    _check_gaussian_scale(gaussian_scale)
    num_levels = int(vqvae.quantizer.num_levels)
    uses_gaussian = vqvae.likelihood != "discretized_logistic"
    squared_error = 0.0
    rounded_squared_error = 0.0
    num_values = 0
    counts = np.zeros((num_levels, vqvae.num_embeddings))
    encode, decode = _graph(vqvae.encode), _graph(vqvae.decode)
    for element in dataset:
        images, _ = _split_element(element)
        images = to_unit_range(images)
        codes = encode(images)
        mean = decode(codes)
        squared_error += float(
            tf.reduce_sum(tf.square(tf.clip_by_value(mean, 0, 1) - images))
        )
        rounded_squared_error += float(
            tf.reduce_sum(tf.square(mean - likelihoods.pixel_values(images)))
        )
        num_values += int(np.prod(images.shape))
        counts += level_code_counts(
            codes, vqvae.num_embeddings, num_levels
        ).numpy()
    if num_values == 0:
        raise ValueError("`dataset` must not be empty.")
    if uses_gaussian and gaussian_scale is None:
        gaussian_scale = math.sqrt(rounded_squared_error / num_values)

    log_px_sum = 0.0
    uniform_sum = 0.0
    prior_sum = 0.0
    num_images = 0
    dims = None
    log_px = _graph(
        lambda images, codes: tf.reduce_sum(
            reconstruction_log_prob(vqvae, images, codes, gaussian_scale)
        )
    )
    code_log_probs = _code_log_prob_sums(vqvae, prior)
    for element in dataset:
        images, labels = _split_element(element)
        images = to_unit_range(images)
        codes = encode(images)
        _check_prior(vqvae, prior, codes)
        dims = int(np.prod(images.shape[1:]))
        num_images += int(images.shape[0])
        log_px_sum += float(log_px(images, codes))
        uniform, prior_nats = code_log_probs(codes, labels)
        uniform_sum += uniform
        prior_sum += prior_nats

    def to_bits(total):
        return -total / (num_images * dims * LN2)

    mse = squared_error / num_values
    levels = {}
    if num_levels > 1:
        per_level = [_usage(level) for level in counts]
        levels = {
            "level_perplexity": [p for p, _ in per_level],
            "level_codebook_usage": [u for _, u in per_level],
        }
    return {
        "likelihood": likelihood_name(vqvae),
        "gaussian_scale": gaussian_scale if uses_gaussian else None,
        "num_images": num_images,
        "bits_per_dim_uniform_prior": to_bits(log_px_sum + uniform_sum),
        "bits_per_dim_pixelcnn_prior": (
            to_bits(log_px_sum + prior_sum) if prior is not None else None
        ),
        "reconstruction_bits_per_dim": to_bits(log_px_sum),
        "mse": mse,
        "psnr": 10.0 * math.log10(1.0 / max(mse, 1e-12)),
        **_code_usage(counts, vqvae.num_embeddings),
        **levels,
    }


def _split_audio_element(element):
    """`(waveforms, speakers or None)` of an audio dataset element."""
    if isinstance(element, dict):
        return element["audio"], element.get("speaker")
    return element, None


# `log_mel_distance`'s default frame (25 ms at 16 kHz).
_LOG_MEL_FRAME = 400


def evaluate_audio_model(
    vqvae, dataset: tf.data.Dataset, prior=None, seed: int = 0
) -> dict:
    """The numbers of `vqvae evaluate` for an audio model, over a dataset.

    Args:
        vqvae: a built audio `VQVAE` (`likelihood="mu_law"` or
            `"mu_law_logistic"`).
        dataset: batches `{"audio": (batch, samples, 1), "speaker":
            (batch,)}` (`tf_vqvae.data.audio_pipeline`) or waveform batches.
            The speakers go to the decoder when it has speakers, and to the
            prior as labels when it is conditional.
        prior: optional `CodePrior` over the model's codes.
        seed: a generative decoder (`decoder="wavenet"`) generates the
            `i`-th waveform of the dataset from
            `sampling.example_seeds(seed, i, 1)` (the same numbers on every
            run); its bits per sample are teacher forced, exact.

    Returns:
        A dict of Python numbers and strings: `likelihood` (`"mu_law"`),
        `num_waveforms`, `num_samples`, `bits_per_sample_uniform_prior`,
        `bits_per_sample_prior` (`None` without a prior),
        `reconstruction_bits_per_sample` (`-log2 p(x|z)` alone), `mse` and
        `snr_db` of the decoded waveforms (the expected value of each
        sample) against the input, `log_mel_distance_db` (their mean
        `tf_vqvae.speech_metrics.log_mel_distance` from the inputs, per
        waveform: the spectral error, blind to the phase that SNR
        punishes; `None` for waveforms shorter than its 400-sample frame),
        `num_levels`,
        `bits_per_position_uniform_prior`, `perplexity` and
        `codebook_usage` (codes pooled over the dataset and the levels).

    Raises:
        TypeError: a `prior` that is no `CodePrior`.
        ValueError: an image model, an empty dataset or a prior that does
            not match.
    """
    _check_modality(vqvae, "audio", "evaluate_audio_model", "evaluate_model")
    _check_prior(vqvae, prior)
    num_levels = int(vqvae.quantizer.num_levels)
    counts = np.zeros((num_levels, vqvae.num_embeddings))
    log_px_sum = uniform_sum = prior_sum = 0.0
    signal = squared_error = log_mel_sum = 0.0
    num_waveforms = num_samples = 0
    encode = _graph(vqvae.encode)
    log_px = _graph(
        lambda waveforms, codes, speakers: tf.reduce_sum(
            waveform_log_prob(vqvae, waveforms, codes, speakers)
        )
    )
    code_log_probs = _code_log_prob_sums(vqvae, prior)
    # A generative decoder runs its own compiled sampler, seeded per example.
    decode = (
        vqvae.decode
        if getattr(vqvae, "generative_decoder", False)
        else _graph(vqvae.decode)
    )
    log_mel = _graph(
        lambda waveforms, decoded: tf.reduce_sum(
            log_mel_distance(waveforms, decoded)
        )
    )
    for element in dataset:
        waveforms, speakers = _split_audio_element(element)
        waveforms = as_waveforms(waveforms)
        decoder_speakers = speakers if vqvae.num_speakers else None
        _check_speakers(vqvae, decoder_speakers)
        codes = encode(waveforms)
        _check_prior(vqvae, prior, codes)
        log_px_sum += float(log_px(waveforms, codes, decoder_speakers))
        uniform, prior_nats = code_log_probs(codes, speakers)
        uniform_sum += uniform
        prior_sum += prior_nats
        decoded = decode(
            codes,
            speaker=decoder_speakers,
            **sampling.decode_seed(
                vqvae, seed, num_waveforms, int(waveforms.shape[0])
            ),
        )
        squared_error += float(tf.reduce_sum(tf.square(decoded - waveforms)))
        signal += float(tf.reduce_sum(tf.square(waveforms)))
        if waveforms.shape[1] >= _LOG_MEL_FRAME:
            log_mel_sum += float(log_mel(waveforms, decoded))
        num_waveforms += int(waveforms.shape[0])
        num_samples += int(np.prod(waveforms.shape))
        counts += level_code_counts(
            codes, vqvae.num_embeddings, num_levels
        ).numpy()
    if num_samples == 0:
        raise ValueError("`dataset` must not be empty.")

    def to_bits(total):
        return -total / (num_samples * LN2)

    return {
        "likelihood": likelihood_name(vqvae),
        "num_waveforms": num_waveforms,
        "num_samples": num_samples,
        "bits_per_sample_uniform_prior": to_bits(log_px_sum + uniform_sum),
        "bits_per_sample_prior": (
            to_bits(log_px_sum + prior_sum) if prior is not None else None
        ),
        "reconstruction_bits_per_sample": to_bits(log_px_sum),
        "mse": squared_error / num_samples,
        "snr_db": 10.0 * math.log10(max(signal, 1e-12))
        - 10.0 * math.log10(max(squared_error, 1e-12)),
        "log_mel_distance_db": (
            log_mel_sum / num_waveforms
            if waveforms.shape[1] >= _LOG_MEL_FRAME
            else None
        ),
        **_code_usage(counts, vqvae.num_embeddings),
    }


def utterance_codes(
    vqvae, utterances, segment_length: int, batch_size: int = 32
) -> list[np.ndarray]:
    """The codes of each utterance, as an audio model sees them in `fit`.

    Each utterance is cut into consecutive segments of `segment_length`
    samples, the last one zero-padded (`tf_vqvae.data.audio_pipeline` with
    `training=False`), the segments are encoded in batches and each
    utterance's codes are concatenated in order: code `i` covers samples
    `[i * f, (i + 1) * f)` of the utterance (`f` the model's
    `downsampling_factor`), as `tf_vqvae.speech_metrics.code_phonemes`
    assumes; codes past the end cover the padding.

    Args:
        vqvae: a built audio `tf_vqvae.contracts.CodeModel`.
        utterances: `tf_vqvae.data.Utterances`.
        segment_length: samples per segment, a multiple of
            `downsampling_factor` (e.g. the model's training examples).
        batch_size: segments per batch.

    Returns:
        Per utterance, int32 codes `(num_segments * segment_length / f,)`
        (`(..., num_levels)` for a multi-level quantizer).
    """
    batches = audio_pipeline(
        utterances, segment_length, batch_size, seed=0, training=False
    )
    encode = _graph(vqvae.encode)
    codes = np.concatenate(
        [encode(as_waveforms(batch["audio"])).numpy() for batch in batches]
    )
    counts = [
        max(1, -(-len(waveform) // segment_length))
        for waveform in utterances.waveforms
    ]
    ends = np.cumsum(counts)
    return [
        np.concatenate(list(codes[end - count : end])).astype(np.int32)
        for count, end in zip(counts, ends)
    ]


def format_evaluation(results: dict) -> str:
    """`evaluate_model`'s results as a two-column markdown table."""
    lines = ["| metric | value |", "|---|---|"]
    for key, value in results.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n"
