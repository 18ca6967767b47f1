"""Image grids for TensorBoard and PNG files.

Plain numpy and `tf.io`, no Keras: used by the TensorBoard callbacks, the CLI
(`reconstructions.png`, sample grids) and anything else that shows a batch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf


def to_uint8(images) -> np.ndarray:
    """Images as uint8 in [0, 255].

    uint8 is kept; floats are read in [0, 1] scale, clipped and rounded.

    Args:
        images: array-like, uint8 or floating point.

    Returns:
        A uint8 numpy array of the same shape.

    Raises:
        TypeError: for other dtypes.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(
            "`images` must be uint8 in [0, 255] or floating point in [0, 1]. "
            f"Received: images.dtype={images.dtype}"
        )
    scaled = np.clip(np.nan_to_num(images.astype(np.float64)), 0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.uint8)


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
    PNG. Any `tf.io.gfile` path works (local, GCS, ...). With `row_labels`
    (one string per row), the rows are named on the left (`label_rows`).

    Returns:
        The uint8 grid that was written.
    """
    grid = image_grid(images, ncols=ncols, padding=padding)
    if row_labels is not None:
        grid = label_rows(
            grid, row_labels, np.shape(images)[1], padding=padding
        )
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    tf.io.write_file(tmp, tf.io.encode_png(grid))
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return grid
