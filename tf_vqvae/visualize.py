"""Image grids for TensorBoard and PNG files.

Plain numpy and `tf.io`, no Keras: used by the TensorBoard callbacks, the CLI
(`reconstructions.png`, sample grids) and anything else that shows a batch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import describe
from tf_vqvae.tensor_checks import check_unit_range

# How far float images may stray from [0, 1] and still be read in [0, 1]
# scale (clipped): a decoder's mean overshoots a little (`likelihood="mse"`
# is unbounded), while 8-bit values given as floats or [-1, 1] images are
# far out.
OVERSHOOT = 0.5


def to_uint8(images) -> np.ndarray:
    """Images as uint8 in [0, 255].

    uint8 is kept; floats are read in [0, 1] scale, clipped and rounded.
    Floats further than `OVERSHOOT` outside [0, 1] are refused, as the
    models refuse them (`tensor_checks.check_unit_range`'s message); NaN
    is shown black.

    Args:
        images: array-like, uint8 or floating point.

    Returns:
        A uint8 numpy array of the same shape.

    Raises:
        TypeError: for other dtypes.
        ValueError: for floats in another scale, e.g. 8-bit values as floats
            (0 to 255) or [-1, 1].
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(
            "`images` must be uint8 in [0, 255] or floating point in [0, 1]. "
            f"Received: images.dtype={images.dtype}"
        )
    values = np.nan_to_num(images.astype(np.float64), nan=0.0)
    if values.size and (
        values.min() < -OVERSHOOT or values.max() > 1.0 + OVERSHOOT
    ):
        # The models' own check, for its message.
        check_unit_range(tf.constant(values, tf.float32))
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_grid(images, ncols: int = 8, padding: int = 1) -> np.ndarray:
    """Tiles a batch of images into one image, row by row.

    Args:
        images: `(batch, height, width, channels)` with 1, 3 or 4 channels,
            uint8 or float in [0, 1] (clipped).
        ncols: images per row; the last row is padded with black tiles.
        padding: black pixels between tiles and around the border.

    Returns:
        uint8 `(rows * (height + padding) + padding, ncols * (width + padding)
        + padding, channels)` with `rows = ceil(batch / ncols)`.

    Raises:
        ValueError: for a batch that is not rank 4 with 1, 3 or 4 channels, an
            empty batch, or a non-positive `ncols` / negative `padding`.

    Example:

    >>> grid = image_grid(np.zeros((10, 32, 32, 3)), ncols=4)
    >>> grid.shape
    (100, 133, 3)
    """
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(
            "`ncols` must be a positive integer. "
            f"Received: ncols={ncols!r} (of type {type(ncols).__name__})."
        )
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(
            "`padding` must be a non-negative integer. "
            f"Received: padding={padding!r} (of type {type(padding).__name__})."
        )
    images = to_uint8(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "`images` must have shape (batch, height, width, channels) with "
            f"1, 3 or 4 channels. Received: images.shape={images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError(
            "`images` must hold at least one image. "
            f"Received: images.shape={images.shape}"
        )
    count, height, width, channels = images.shape
    ncols = min(ncols, count)
    nrows = math.ceil(count / ncols)
    grid = np.zeros(
        (
            nrows * (height + padding) + padding,
            ncols * (width + padding) + padding,
            channels,
        ),
        dtype=np.uint8,
    )
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        top = padding + row * (height + padding)
        left = padding + col * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def side_by_side(originals, reconstructions) -> np.ndarray:
    """Interleaves two equal batches: `[x0, y0, x1, y1, ...]`.

    With an even `ncols`, `image_grid` then shows each reconstruction to the
    right of its original.

    Raises:
        ValueError: if the two batches differ in shape.
    """
    originals = to_uint8(originals)
    reconstructions = to_uint8(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(
            "`originals` and `reconstructions` must have the same shape. "
            f"Received: originals.shape={originals.shape}, "
            f"reconstructions.shape={reconstructions.shape}"
        )
    pairs = np.stack([originals, reconstructions], axis=1)
    return pairs.reshape((-1,) + originals.shape[1:])


def label_rows(grid, labels, row_height: int, padding: int = 1) -> np.ndarray:
    """`grid` with a text margin on its left naming each row.

    Args:
        grid: uint8 `(height, width, channels)`, rows of tiles
            `row_height` high with `padding` pixels between them (as
            `image_grid` makes them).
        labels: one string per row.
        row_height: the tiles' height.
        padding: the pixels between rows.

    Returns:
        uint8 `(height, margin + width, channels)`: white text (PIL's
        default font) on black, vertically centred on each row, left of
        the grid.

    Raises:
        ValueError: if the number of labels is not the number of rows.
    """
    from PIL import Image, ImageDraw, ImageFont

    grid = to_uint8(grid)
    labels = [str(label) for label in labels]
    rows = (grid.shape[0] - padding) // (row_height + padding)
    if len(labels) != rows:
        raise ValueError(
            f"`labels` must name each of the grid's {rows} rows. "
            f"Received: {len(labels)} labels"
        )
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [measure.textbbox((0, 0), label, font=font) for label in labels]
    margin = max(box[2] for box in boxes) + 2 * max(padding, 3)
    channels = grid.shape[2]
    canvas = Image.new("L", (margin, grid.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for i, (label, box) in enumerate(zip(labels, boxes)):
        top = padding + i * (row_height + padding)
        y = top + (row_height - (box[3] - box[1])) // 2 - box[1]
        draw.text((max(padding, 3), y), label, fill=255, font=font)
    text = np.asarray(canvas)[..., None].repeat(channels, axis=2)
    if channels == 4:
        text[..., 3] = 255
    return np.concatenate([text, grid], axis=1)


def save_image_grid(
    path: str | os.PathLike,
    images,
    ncols: int = 8,
    padding: int = 1,
    row_labels=None,
) -> np.ndarray:
    """Writes `image_grid(images, ncols, padding)` to `path` as a PNG.

    Written to a temporary file and renamed, so a reader never sees half a
    PNG; if writing fails, the temporary file is removed. Any `tf.io.gfile`
    path works (local, GCS, ...; `~` is expanded). With `row_labels` (one
    string per row), the rows are named on the left (`label_rows`).

    Returns:
        The uint8 grid that was written.

    Raises:
        ValueError: `path` is a directory, or bad images (`image_grid`).
    """
    path = os.path.expanduser(os.fspath(path))
    if tf.io.gfile.isdir(path):
        raise ValueError(
            "`path` must name a PNG file, not a directory. "
            f"{describe('path', path)}"
        )
    grid = image_grid(images, ncols=ncols, padding=padding)
    if row_labels is not None:
        grid = label_rows(
            grid, row_labels, np.shape(images)[1], padding=padding
        )
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        tf.io.write_file(tmp, tf.io.encode_png(grid))
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        # Also on Ctrl-C: no staging file left beside `path`.
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise
    return grid


# ------------------------------------------------------------ per-code view
def patches_at(images, positions, factor: int, context: int = 0) -> np.ndarray:
    """The input patches of code grid positions.

    The code at grid position `(i, j)` of image `n` summarises the input
    region `images[n, i*f:(i+1)*f, j*f:(j+1)*f]` (`f = factor`, the model's
    `downsampling_factor`); each patch is that region with `context` more
    pixels on every side (black beyond the image's border).

    Args:
        images: uint8 `(n, height, width, channels)`.
        positions: int `(m, 3)`, rows `(image, i, j)`.
        factor: f, input size per code on each axis.
        context: extra pixels on each side.

    Returns:
        uint8 `(m, f + 2 * context, f + 2 * context, channels)`.
    """
    images = to_uint8(images)
    positions = np.asarray(positions, np.int64).reshape(-1, 3)
    padded = np.pad(
        images, ((0, 0), (context, context), (context, context), (0, 0))
    )
    size = factor + 2 * context
    patches = np.zeros((len(positions), size, size, images.shape[-1]), "uint8")
    for k, (n, i, j) in enumerate(positions):
        top, left = i * factor, j * factor
        patches[k] = padded[n, top : top + size, left : left + size]
    return patches


def code_patches(
    images, codes, code: int, factor: int, count: int, context: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Input patches whose code is `code` (`patches_at` of its positions).

    Of all the positions whose code is `code`, `count` spread evenly over
    them (in image, row, column order) are taken.

    Args:
        images: uint8 `(n, height, width, channels)`.
        codes: int `(n, height // f, width // f)`, the codes of `images`
            (`model.encode(images)`).
        code: the code.
        factor: f, input size per code on each axis.
        count: at most this many patches.
        context: extra pixels on each side.

    Returns:
        `(patches, positions)`: uint8 `(m, f + 2 * context, f + 2 *
        context, channels)` with `m = min(count, occurrences)`, and int
        `(m, 3)` rows `(image, i, j)`.
    """
    positions = np.argwhere(np.asarray(codes) == code)
    if len(positions) > count:
        picks = np.linspace(0, len(positions) - 1, count).round()
        positions = positions[picks.astype(int)]
    return patches_at(images, positions, factor, context), positions


def _outlined(patches: np.ndarray, scale: int, context: int, factor: int):
    """Patches enlarged `scale` times, the code's region outlined."""
    big = patches.repeat(scale, axis=1).repeat(scale, axis=2)
    if context == 0 or big.shape[-1] not in (3, 4):
        return big
    low, high = context * scale - 1, (context + factor) * scale
    colour = np.array([255, 255, 0, 255][: big.shape[-1]], "uint8")
    big[:, low, low : high + 1] = colour
    big[:, high, low : high + 1] = colour
    big[:, low : high + 1, low] = colour
    big[:, low : high + 1, high] = colour
    return big


def code_grid(
    images,
    rows,
    labels,
    factor: int,
    patches_per_code: int = 16,
    context: int | None = None,
    tile_size: int = 36,
) -> np.ndarray:
    """One row of input patches per code (`patches_at`), named on the left.

    Each patch is enlarged to about `tile_size` pixels, with the code's own
    `factor x factor` region outlined in yellow when there is context around
    it; a row with fewer positions than `patches_per_code` has black tiles
    at its end.

    Args:
        images, factor: as for `patches_at`.
        rows: one int array `(m, 3)` of positions `(image, i, j)` per row,
            shown in order (at most `patches_per_code` of them), e.g. a
            code's nearest positions (`tf_vqvae.evaluation.nearest_positions`)
            or its occurrences (`code_patches`).
        labels: one name per row, e.g. `"code 7: 1234"`.
        patches_per_code: tiles per row.
        context: pixels of context (default `factor`: a `3f x 3f` patch).
        tile_size: about this many pixels per tile.

    Returns:
        uint8 `(height, width, channels)`.
    """
    context = factor if context is None else context
    size = factor + 2 * context
    scale = max(1, tile_size // size)
    channels = np.shape(images)[-1]
    tiles = []
    for positions in rows:
        patches = patches_at(
            images, np.asarray(positions)[:patches_per_code], factor, context
        )
        row = np.zeros((patches_per_code, size, size, channels), "uint8")
        row[: len(patches)] = patches
        tiles.append(_outlined(row, scale, context, factor))
    grid = image_grid(np.concatenate(tiles), ncols=patches_per_code)
    return label_rows(grid, labels, row_height=size * scale)


def usage_plot(counts, width: int = 640, height: int = 240) -> np.ndarray:
    """A bar chart of code usage: bar `k` is `counts[k]` high.

    Drawn with PIL (no plotting library): code index on the x axis, the
    count on the y axis (0 to the largest count, both labelled), dead codes
    as red ticks under the axis, and a title with the number of positions,
    the codes used and the perplexity.

    Args:
        counts: `(num_embeddings,)` non-negative counts.
        width, height: the image size in pixels.

    Returns:
        uint8 `(height, width, 3)`.

    Raises:
        ValueError: no counts, or negative or non-finite ones.
    """
    from PIL import Image, ImageDraw, ImageFont

    counts = np.asarray(counts, "float64").reshape(-1)
    if counts.size == 0:
        raise ValueError(
            "`counts` must hold one count per code, at least one. "
            "Received: counts.shape=(0,)."
        )
    if not np.all(np.isfinite(counts) & (counts >= 0)):
        raise ValueError(
            "`counts` must be non-negative and finite. Received: counts from "
            f"{counts.min():g} to {counts.max():g}."
        )
    k = len(counts)
    total = counts.sum()
    used = int(np.count_nonzero(counts))
    p = counts[counts > 0] / max(total, 1.0)
    perplexity = float(np.exp(-np.sum(p * np.log(p)))) if used else 0.0
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, right, top, bottom = 48, width - 8, 24, height - 28
    title = (
        f"{int(total)} positions: {used} of {k} codes used, "
        f"perplexity {perplexity:.1f}"
    )
    draw.text((left, 4), title, fill="black", font=font)
    peak = counts.max() if total > 0 else 1.0
    step = (right - left) / k
    for code, count in enumerate(counts):
        x0 = left + code * step
        x1 = max(x0, left + (code + 1) * step - (1 if step >= 3 else 0))
        if count > 0:
            y = bottom - (bottom - top) * count / peak
            draw.rectangle([x0, y, x1, bottom], fill=(40, 90, 180))
        else:
            draw.rectangle([x0, bottom + 2, x1, bottom + 5], fill=(220, 40, 40))
    draw.line([left - 1, top, left - 1, bottom], fill="black")
    draw.line([left - 1, bottom + 1, right, bottom + 1], fill="black")
    draw.text((4, top - 5), f"{int(peak)}", fill="black", font=font)
    draw.text((4, bottom - 10), "0", fill="black", font=font)
    draw.text((left, bottom + 8), "0", fill="black", font=font)
    last = f"code {k - 1}"
    box = draw.textbbox((0, 0), last, font=font)
    draw.text((right - box[2], bottom + 8), last, fill="black", font=font)
    return np.asarray(image)
