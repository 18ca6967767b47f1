"""Discrete likelihoods of 8-bit pixels (discretized logistic mixture,
discretized Gaussian) and of 8-bit mu-law audio samples (categorical or
discretized logistic mixture).

Pixels are images in [0, 1] (uint8 / 255), so value `v` in {0, ..., 255} sits
at `x = v / 255` and owns the bin `[x - 1/510, x + 1/510]`; the two edge bins
extend to -inf and +inf, so the 256 probabilities sum to one (PixelCNN++ [1],
on a [0, 1] scale instead of [-1, 1]):

    P(v) = F((x + 1/510 - mu) / s) - F((x - 1/510 - mu) / s)  (0 < v < 255)
    P(0) = F((1/510 - mu) / s),  P(255) = 1 - F((1 - 1/510 - mu) / s)

with `F` the logistic sigmoid (or the Gaussian CDF), computed in log space
without cancellation (so unlike [1] no density approximation is needed for
tiny bin masses). All functions return natural logarithms per element and
work on float32 tensors.

Audio samples in [-1, 1] are companded and quantized to 8 bits as in
WaveNet [2] (`mu = 255`):

    y = sign(x) ln(1 + mu |x|) / ln(1 + mu)        (in [-1, 1])
    q = min(floor((y + 1) / 2 * 256), 255)          (256 uniform bins)

and decoded at the bin centres, `y = (2 q + 1) / 256 - 1`,
`x = sign(y) ((1 + mu)^|y| - 1) / mu`. The decoder of an audio model outputs
either 256 logits per sample (`p(x | z)` is the categorical probability of
`q`) or the `3 * num_mixtures` parameters of a discretized logistic mixture
over the 256 classes: class `q` is the grid point `q / 255` of the pixel
likelihood above (PixelCNN++ [1] on the companded scale), so the same
log-space bin masses serve both.

References:
    [1] Salimans et al., 2017. PixelCNN++: Improving the PixelCNN with
        Discretized Logistic Mixture Likelihood and Other Modifications.
        https://arxiv.org/abs/1701.05517
    [2] van den Oord et al., 2016. WaveNet: A Generative Model for Raw
        Audio. https://arxiv.org/abs/1609.03499
"""

from __future__ import annotations

import math

import tensorflow as tf

NUM_BINS = 256
_HALF_BIN = 0.5 / (NUM_BINS - 1)
_MIN_LOG_SCALE = -7.0


def pixel_values(images) -> tf.Tensor:
    """Images in [0, 1] (float) or uint8 as float32 on the grid `v / 255`."""
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / (NUM_BINS - 1)
    images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
    return tf.round(images * (NUM_BINS - 1)) / (NUM_BINS - 1)


def _log_bin_mass(log_cdf, x, loc, scale) -> tf.Tensor:
    """log P(v) for every pixel, from the log CDF of the standardised
    distribution (symmetric: F(-t) = 1 - F(t)).

    Inner bins: `log(F(a) - F(b))` computed as `log F(a) + log(1 -
    exp(log F(b) - log F(a)))`, taking the bin on the side of the mean where
    both CDF values are at most about 1/2 (mirrored above the mean), so the
    difference never cancels: no density approximation is needed even
    hundreds of scales away from the mean.
    """
    plus = (x - loc + _HALF_BIN) / scale
    minus = (x - loc - _HALF_BIN) / scale
    above = x > loc
    a = tf.where(above, -minus, plus)
    b = tf.where(above, -plus, minus)
    log_a = log_cdf(a)
    inner = log_a + tf.math.log(-tf.math.expm1(log_cdf(b) - log_a))
    return tf.where(
        x < _HALF_BIN,
        log_cdf(plus),
        tf.where(x > 1.0 - _HALF_BIN, log_cdf(-minus), inner),
    )


def _log_sigmoid(t: tf.Tensor) -> tf.Tensor:
    return -tf.nn.softplus(-t)


def discretized_logistic_log_prob(images, loc, log_scale) -> tf.Tensor:
    """Log P(pixel) under a discretized logistic, elementwise (nats).

    Args:
        images: float in [0, 1] (rounded to the nearest `v / 255`) or uint8.
        loc: mu, same shape (broadcastable), on the [0, 1] scale.
        log_scale: log s, same shape; clipped below at -7.

    Returns:
        float32 log probabilities of the broadcast shape.
    """
    x = pixel_values(images)
    loc = tf.cast(loc, tf.float32)
    log_scale = tf.maximum(tf.cast(log_scale, tf.float32), _MIN_LOG_SCALE)
    return _log_bin_mass(_log_sigmoid, x, loc, tf.exp(log_scale))


def discretized_logistic_mixture_log_prob(
    images, logits, locs, log_scales
) -> tf.Tensor:
    """Log P(pixel) under a mixture of discretized logistics (nats).

    Every channel has its own mixture (channels are independent given the
    decoder's output; PixelCNN++'s autoregression over RGB is not used).

    Args:
        images: `(..., channels)`, float in [0, 1] or uint8.
        logits: `(..., channels, num_mixtures)` mixture weights (logits).
        locs: `(..., channels, num_mixtures)` component means, [0, 1] scale.
        log_scales: `(..., channels, num_mixtures)` component log scales.

    Returns:
        float32 `(..., channels)`.
    """
    per_component = discretized_logistic_log_prob(
        tf.convert_to_tensor(images)[..., None], locs, log_scales
    )
    log_weights = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_logsumexp(per_component + log_weights, axis=-1)


def _log_ndtr(z: tf.Tensor) -> tf.Tensor:
    """log Phi(z), the standard normal log CDF, without underflow.

    Above z = -8 it is `log(erfc(-z / sqrt 2) / 2)`; below, the asymptotic
    series `log(phi(z) / -z * (1 - 1/z^2 + 3/z^4))` is used; its next term
    is below 6e-5 relative there.
    """
    safe = tf.minimum(z, -8.0)
    z2 = tf.square(safe)
    series = (
        -0.5 * z2
        - tf.math.log(-safe)
        - 0.5 * math.log(2 * math.pi)
        + tf.math.log(1.0 - 1.0 / z2 + 3.0 / tf.square(z2))
    )
    direct = tf.math.log(
        0.5 * tf.math.erfc(-tf.maximum(z, -8.0) / math.sqrt(2.0))
    )
    return tf.where(z < -8.0, series, direct)


def discretized_gaussian_log_prob(images, loc, scale) -> tf.Tensor:
    """Log P(pixel) under a discretized Gaussian N(loc, scale^2) (nats).

    The likelihood that bits/dim uses for models trained with MSE (a
    Gaussian decoder of fixed variance). `scale` is clipped below at e^-7.
    """
    x = pixel_values(images)
    loc = tf.cast(loc, tf.float32)
    scale = tf.maximum(tf.cast(scale, tf.float32), math.exp(_MIN_LOG_SCALE))
    return _log_bin_mass(_log_ndtr, x, loc, scale)


def num_logistic_params(num_mixtures: int = 1) -> int:
    """Decoder outputs per channel: 2 (loc, log scale) for one logistic,
    3 per component (logit, loc, log scale) for a mixture."""
    return 2 if num_mixtures == 1 else 3 * num_mixtures


def split_logistic_params(outputs, channels: int, num_mixtures: int = 1):
    """`(logits, locs, log_scales)`, each `(..., channels, num_mixtures)`,
    from decoder outputs `(..., channels * num_logistic_params)`.

    Layout: `[loc | log_scale]` blocks of `channels` for one logistic (logits
    are then zeros); `[logits | locs | log_scales]` blocks of
    `channels * num_mixtures` for a mixture. Locs are on the [0, 1] scale:
    the decoder works on [-0.5, 0.5], so 0.5 is added.
    """
    outputs = tf.cast(outputs, tf.float32)
    shape = tf.concat(
        [tf.shape(outputs)[:-1], [channels, num_mixtures]], axis=0
    )
    if num_mixtures == 1:
        loc, log_scale = tf.split(outputs, 2, axis=-1)
        locs = tf.reshape(loc, shape) + 0.5
        log_scales = tf.reshape(log_scale, shape)
        return tf.zeros_like(locs), locs, log_scales
    logits, locs, log_scales = tf.split(outputs, 3, axis=-1)
    return (
        tf.reshape(logits, shape),
        tf.reshape(locs, shape) + 0.5,
        tf.reshape(log_scales, shape),
    )


def logistic_mixture_mean(logits, locs) -> tf.Tensor:
    """The mixture's mean `sum_m pi_m mu_m`, clipped to [0, 1]: the image
    a discretized-logistic decoder reports, `(..., channels)`.

    This is the mean of the continuous mixture, clipped; the discretized
    distribution's exact mean differs only where mass falls outside [0, 1].
    """
    weights = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.clip_by_value(tf.reduce_sum(weights * locs, axis=-1), 0.0, 1.0)


def logistic_pixel_log_prob(images, outputs, channels: int) -> tf.Tensor:
    """Log P(images) per subpixel under the discretized logistic whose
    parameters are a decoder's `outputs` (`split_logistic_params` layout,
    one component): float32 `(..., channels)`, nats."""
    logits, locs, log_scales = split_logistic_params(outputs, channels)
    return discretized_logistic_mixture_log_prob(
        images, logits, locs, log_scales
    )


MU_LAW_CLASSES = 256
MU = MU_LAW_CLASSES - 1


def mu_law_compress(waveforms) -> tf.Tensor:
    """The companded waveform `sign(x) ln(1 + mu |x|) / ln(1 + mu)`, not
    quantized: float32 in [-1, 1], same shape (inputs clipped to [-1, 1])."""
    x = tf.clip_by_value(tf.cast(waveforms, tf.float32), -1.0, 1.0)
    # log and exp, not log1p: TFLite has builtins for these (the encoder
    # of an audio model companding its input is exported).
    return tf.sign(x) * tf.math.log(1.0 + MU * tf.abs(x)) / math.log1p(MU)


def mu_law_encode(waveforms) -> tf.Tensor:
    """8-bit mu-law classes of `waveforms`: int32 in `[0, 255]`, same shape.

    Values outside [-1, 1] are clipped first (the models refuse them
    before they get here).
    """
    y = mu_law_compress(waveforms)
    bins = tf.floor((y + 1.0) * (MU_LAW_CLASSES / 2))
    return tf.cast(tf.clip_by_value(bins, 0.0, MU), tf.int32)


def mu_law_decode(classes) -> tf.Tensor:
    """float32 samples in [-1, 1] at the centres of mu-law `classes`."""
    q = tf.cast(classes, tf.float32)
    y = (2.0 * q + 1.0) / MU_LAW_CLASSES - 1.0
    return tf.sign(y) * tf.math.expm1(tf.abs(y) * math.log1p(MU)) / MU


def mu_law_log_prob(waveforms, logits) -> tf.Tensor:
    """log p(q(x)) per sample under a 256-way categorical (nats).

    Args:
        waveforms: float samples in [-1, 1], shape `S`.
        logits: `S + (256,)`, unnormalised log probabilities of the classes
            (computed in float32 whatever their dtype).

    Returns:
        float32 log probabilities of shape `S`.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    classes = mu_law_encode(waveforms)
    rank = classes.shape.rank
    picked = tf.gather(log_probs, classes[..., None], batch_dims=rank)
    return picked[..., 0]


def mu_law_mean(logits) -> tf.Tensor:
    """The categorical's expected value in the linear domain,
    `sum_q p(q) mu_law_decode(q)`: float32 samples in [-1, 1], shape `S` for
    logits `S + (256,)`."""
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    centres = mu_law_decode(tf.range(MU_LAW_CLASSES))
    return tf.reduce_sum(probs * centres, axis=-1)


def mu_law_mode(logits) -> tf.Tensor:
    """The most probable class's centre: float32 samples, shape `S` for
    logits `S + (256,)`."""
    return mu_law_decode(tf.argmax(tf.cast(logits, tf.float32), axis=-1))


def mu_law_grid(waveforms) -> tf.Tensor:
    """The mu-law class of each sample on the pixel grid, `q / 255`:
    float32 in [0, 1], same shape as `waveforms`."""
    return tf.cast(mu_law_encode(waveforms), tf.float32) / MU


def mu_law_logistic_log_prob(
    waveforms, outputs, num_mixtures: int
) -> tf.Tensor:
    """log p(q(x)) per sample under a discretized logistic mixture over the
    256 mu-law classes (nats).

    Args:
        waveforms: float samples in [-1, 1], shape `S`.
        outputs: `S + (3 * num_mixtures,)` (`S + (2,)` for one component),
            the `split_logistic_params` layout with one channel; locations on
            [-0.5, 0.5] (0.5 is added to reach the [0, 1] grid).
        num_mixtures: components of the mixture.

    Returns:
        float32 log probabilities of shape `S`.
    """
    logits, locs, log_scales = split_logistic_params(outputs, 1, num_mixtures)
    grid = mu_law_grid(waveforms)[..., None]
    return discretized_logistic_mixture_log_prob(
        grid, logits, locs, log_scales
    )[..., 0]


def mu_law_logistic_probs(outputs, num_mixtures: int) -> tf.Tensor:
    """The probabilities of the 256 mu-law classes under the mixture:
    float32 `S + (256,)` for outputs `S + (3 * num_mixtures,)` (they sum to
    one). Costs 256 bin masses per component and sample: for evaluation and
    tests, not the training loss."""
    logits, locs, log_scales = split_logistic_params(
        tf.convert_to_tensor(outputs)[..., None, :], 1, num_mixtures
    )
    grid = tf.range(MU_LAW_CLASSES, dtype=tf.float32)[:, None] / MU
    return tf.exp(
        discretized_logistic_mixture_log_prob(grid, logits, locs, log_scales)
    )[..., 0]


def mu_law_expand(grid) -> tf.Tensor:
    """Waveform samples for points of the [0, 1] class grid, continuous in
    between: `q = 255 g`, then `mu_law_decode(q)`'s formula (exact at the
    grid points `q / 255`). float32, same shape."""
    q = tf.clip_by_value(tf.cast(grid, tf.float32), 0.0, 1.0) * MU
    y = (2.0 * q + 1.0) / MU_LAW_CLASSES - 1.0
    # exp, not expm1: a TFLite builtin (exported decoders run this).
    return tf.sign(y) * (tf.exp(tf.abs(y) * math.log1p(MU)) - 1.0) / MU


def audio_log_prob(likelihood: str, waveforms, outputs) -> tf.Tensor:
    """log p(q(x)) per sample (nats, float32 of the waveforms' shape `S`)
    under an audio decoder's `outputs` `S + (p,)` for `likelihood`
    `"mu_law"` (256 logits) or `"mu_law_logistic"` (the mixture's
    parameters; its number of components is read off `p`)."""
    if likelihood == "mu_law":
        return mu_law_log_prob(waveforms, outputs)
    if likelihood == "mu_law_logistic":
        params = int(outputs.shape[-1])
        num_mixtures = 1 if params == 2 else params // 3
        return mu_law_logistic_log_prob(waveforms, outputs, num_mixtures)
    raise ValueError(
        "`likelihood` must be 'mu_law' or 'mu_law_logistic'. "
        f"Received: likelihood={likelihood!r}"
    )


def mu_law_logistic_mean(
    outputs, num_mixtures: int, keepdims: bool = False
) -> tf.Tensor:
    """The waveform a mu-law logistic decoder reports: the mixture's mean on
    the companded class grid (`logistic_mixture_mean`, clipped to [0, 1]),
    expanded to the linear domain by `mu_law_expand`. float32 samples, shape
    `S` for outputs `S + (3 * num_mixtures,)` (`S + (1,)` with `keepdims`).

    Not the expected value in the linear domain (that needs all 256 bin
    masses per component, `mu_law_logistic_probs`): expanding after
    averaging pulls samples towards zero a little where the mixture is wide.
    Static shapes and TFLite builtins only (exported decoders run this).
    """
    outputs = tf.cast(outputs, tf.float32)
    if num_mixtures == 1:
        grid = tf.split(outputs, 2, axis=-1)[0] + 0.5
    else:
        logits, locs, _ = tf.split(outputs, 3, axis=-1)
        weights = tf.nn.softmax(logits, axis=-1)
        grid = tf.reduce_sum(weights * (locs + 0.5), axis=-1, keepdims=True)
    waveforms = mu_law_expand(grid)
    return waveforms if keepdims else waveforms[..., 0]
