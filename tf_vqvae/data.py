"""Input pipelines: image datasets as uint8 tensors, batched for training.

Three sources, named by one string (the CLI's `--dataset`):

- `"photos"` (the default, offline): 32x32 tiles of the photographs that
  scikit-image ships (astronaut, coffee, chelsea, rocket, hubble_deep_field,
  immunohistochemistry, retina, colorwheel). The bottom eighth of each photo
  is held out as the `"test"` split, so test tiles never overlap train tiles.
- `"tfds:NAME[:SPLIT]"`: any TensorFlow Datasets image dataset already in
  `data_dir` (`cifar10`, `mnist`, `svhn_cropped`, `celeb_a`, ...).
- `"folder:PATH"`: a folder laid out `PATH/split/label/*.jpg|png`, read with
  `tfds.folder_dataset.ImageFolder`. All images must share one size and mode.

`load_images` returns the decoded images; `training_pipeline` caches, shuffles,
batches and prefetches them so that the order of batches depends only on
`(seed, epoch)`, and starts at any global step, which is what makes a resumed
run bit-identical to an uninterrupted one:

    images = load_images("photos")
    dataset = training_pipeline(images, global_batch_size=64, seed=0)
    model.fit(dataset, steps_per_epoch=images.steps_per_epoch(64), epochs=10)
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf_vqvae.options import DEFAULT_DATASET

PHOTO_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
)
PHOTO_TILE_SIZE = 32
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_MAX_SHUFFLE_BUFFER = 10_000
# PIL modes by the number of channels the decoder gives them.
_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4}


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message saying what to do."""


@dataclasses.dataclass(frozen=True)
class Images:
    """Decoded images of one split (or any fixed-size examples, e.g. the
    int32 code grids a prior trains on).

    Attributes:
        dataset: `tf.data.Dataset` of uint8 images `(height, width,
            channels)`, in a fixed order (not shuffled, not cached).
        num_examples: number of images.
        image_shape: `(height, width, channels)` (the shape of one example).
        name: the dataset string the images came from.
        split: the split name.
    """

    dataset: tf.data.Dataset
    num_examples: int
    image_shape: tuple[int, ...]
    name: str
    split: str

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full batches in one pass over the images."""
        return self.num_examples // global_batch_size


def parse_dataset(dataset: str) -> tuple[str, str, str | None]:
    """Splits a dataset string into `(kind, name, split)`.

    `kind` is `"photos"`, `"tfds"` or `"folder"`; `split` is `None` when the
    string names none. Raises `DatasetError` for an unknown kind.
    """
    if not isinstance(dataset, str) or not dataset:
        raise DatasetError(
            "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' or "
            f"'folder:PATH'. Received: dataset={dataset!r}"
        )
    kind, _, rest = dataset.partition(":")
    if kind == "photos":
        return "photos", "photos", rest or None
    if kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return "tfds", name, split or None
    if kind == "folder" and rest:
        return "folder", rest, None
    raise DatasetError(
        "`dataset` must be 'photos[:split]', 'tfds:NAME[:split]' (e.g. "
        "'tfds:cifar10') or 'folder:PATH'. "
        f"Received: dataset={dataset!r}"
    )


def load_images(
    dataset: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | None = None,
) -> Images:
    """Loads one split of a dataset as uint8 images.

    Args:
        dataset: `"photos[:split]"`, `"tfds:NAME[:split]"` or
            `"folder:PATH"` (see the module docstring). A split in the string
            wins over `split`.
        split: split to load when `dataset` names none (`"train"`,
            `"test"`, or for tfds any split expression like `"train[:90%]"`).
        data_dir: where tfds looks for prepared datasets (tfds' default when
            `None`); ignored by the other sources.

    Returns:
        `Images` with a dataset of uint8 `(height, width, channels)` tensors.

    Raises:
        DatasetError: unknown or missing dataset, empty folder, images of
            mixed sizes or modes (grayscale vs RGB), images of varying size.
    """
    kind, name, named_split = parse_dataset(dataset)
    split = named_split or split
    if kind == "photos":
        return _load_photos(dataset, split)
    if kind == "tfds":
        return _load_tfds(dataset, name, split, data_dir)
    return _load_folder(dataset, name, split)


def training_pipeline(
    images: Images,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    end_step: int | None = None,
    shuffle_buffer_size: int | None = None,
) -> tf.data.Dataset:
    """Shuffled global batches for steps `start_step` to `end_step`.

    decode -> `cache` -> per-epoch shuffle seeded by `(seed, epoch)` ->
    `batch(global_batch_size, drop_remainder=True)` -> `skip` ->
    `prefetch(AUTOTUNE)`. Epoch `e` is `images.steps_per_epoch(...)` batches
    whose order depends only on `seed` and `e`, so the batch at global step
    `s` is the same whether training started at 0 or resumed at `s`. Under
    `tf.distribute` the global batch is split across replicas (sharded by
    data, so every worker sees the same order).

    Args:
        images: from `load_images`.
        global_batch_size: examples per step over all replicas.
        seed: shuffling seed.
        start_step: global step of the first batch.
        end_step: global step after the last batch (default: the end of
            the epoch `start_step` is in).
        shuffle_buffer_size: defaults to all examples (at most 10000).

    Returns:
        `tf.data.Dataset` of uint8 batches
        `(global_batch_size, height, width, channels)`.

    Raises:
        DatasetError: if the split has fewer images than one batch.
    """
    steps = images.steps_per_epoch(global_batch_size)
    if steps < 1:
        raise DatasetError(
            f"`global_batch_size` must be at most the number of images in "
            f"{images.name!r} split {images.split!r} ({images.num_examples}). "
            f"Received: global_batch_size={global_batch_size}"
        )
    buffer = shuffle_buffer_size or min(
        images.num_examples, _MAX_SHUFFLE_BUFFER
    )
    cached = images.dataset.cache()
    seed = int(seed)
    first_epoch, offset = divmod(int(start_step), steps)
    last_epoch = -(-int(end_step) // steps) if end_step else first_epoch + 1
    last_epoch = max(last_epoch, first_epoch + 1)
    # One dataset per epoch, each shuffled with its own Python seed, chosen
    # in turn: the order of epoch e never depends on the epochs before it.
    # (A tensor seed, e.g. from `range(...).flat_map`, fails under a global
    # seed: `tf.random.set_seed` makes tf.data compare it to 0 in Python.)
    epochs = [
        cached.shuffle(
            buffer,
            seed=(seed * 1_000_003 + e) % 2**31,
            reshuffle_each_iteration=False,
        ).batch(global_batch_size, drop_remainder=True)
        for e in range(first_epoch, last_epoch)
    ]
    choices = tf.data.Dataset.range(len(epochs)).flat_map(
        lambda i: tf.data.Dataset.from_tensors(i).repeat(steps)
    )
    stream = tf.data.Dataset.choose_from_datasets(epochs, choices)
    stream = stream.skip(offset)
    if end_step:
        stream = stream.take(int(end_step) - int(start_step))
    stream = stream.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    options.deterministic = True
    return stream.with_options(options)


def evaluation_batches(
    images: Images, batch_size: int, limit: int | None = None
) -> tf.data.Dataset:
    """Images in their fixed order, batched (last batch may be smaller)."""
    dataset = images.dataset
    if limit is not None:
        dataset = dataset.take(limit)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def first_images(images: Images, count: int) -> np.ndarray:
    """The first `count` images (uint8 numpy), e.g. a fixed validation set."""
    batch = next(iter(images.dataset.batch(count).take(1)))
    return batch.numpy()


# ------------------------------------------------------------------ photos
def photo_crops(
    size: int,
    count: int,
    seed: int = 0,
    names: tuple[str, ...] = PHOTO_NAMES[:5],
) -> np.ndarray:
    """`count` random `size x size` uint8 RGB crops of scikit-image's photos.

    Crops come from anywhere in the photos `names` (taken in turn), so they
    ignore the train/test split of `photo_tiles`: for tests and benchmarks
    that need real images of a given size, offline.
    """
    from skimage import data as skimage_data

    photos = [getattr(skimage_data, name)()[..., :3] for name in names]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crops.append(photo[top : top + size, left : left + size])
    return np.stack(crops)


def photo_tiles(split: str = "train") -> np.ndarray:
    """32x32 uint8 RGB tiles of scikit-image's photographs.

    Non-overlapping tiles in reading order, photo after photo; nearly flat
    tiles (standard deviation below 2, e.g. the black border of `retina`)
    are dropped. The bottom eighth of each photo's tile rows is `"test"`,
    the rest `"train"`.
    """
    from skimage import data as skimage_data

    if split not in ("train", "test"):
        raise DatasetError(
            "The 'photos' dataset has splits 'train' and 'test'. "
            f"Received: split={split!r}"
        )
    size = PHOTO_TILE_SIZE
    tiles = []
    for photo_name in PHOTO_NAMES:
        photo = getattr(skimage_data, photo_name)()[..., :3]
        rows, cols = photo.shape[0] // size, photo.shape[1] // size
        first_test_row = rows - max(1, rows // 8)
        row_range = (
            range(first_test_row)
            if split == "train"
            else range(first_test_row, rows)
        )
        for row in row_range:
            for col in range(cols):
                tile = photo[
                    row * size : (row + 1) * size, col * size : (col + 1) * size
                ]
                if tile.std() >= 2.0:
                    tiles.append(tile)
    return np.stack(tiles).astype("uint8")


def _load_photos(name: str, split: str) -> Images:
    tiles = photo_tiles(split)
    return Images(
        dataset=tf.data.Dataset.from_tensor_slices(tiles),
        num_examples=len(tiles),
        image_shape=tuple(int(d) for d in tiles.shape[1:]),
        name=name,
        split=split,
    )


# -------------------------------------------------------------------- tfds
def _load_tfds(
    dataset: str, name: str, split: str, data_dir: str | None
) -> Images:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"`dataset` names no TensorFlow Datasets dataset: {name!r} is "
            "unknown; use a name from `tfds.list_builders()`, e.g. "
            f"'tfds:cifar10'. Received: dataset={dataset!r}"
        ) from None
    image_key = _image_feature(builder.info.features, dataset)
    try:
        ds = builder.as_dataset(
            split=split,
            shuffle_files=False,
            read_config=tfds.ReadConfig(
                shuffle_seed=0, interleave_cycle_length=1
            ),
        )
    except AssertionError:
        where = data_dir or "tfds' default data dir"
        raise DatasetError(
            f"`dataset` {name!r} is not prepared in {where}; run "
            f"`tfds build {name}` on a machine with network access and pass "
            f"its folder as --data-dir. Received: dataset={dataset!r}"
        ) from None
    except ValueError as error:
        raise DatasetError(
            f"`dataset` {name!r} has no split {split!r} "
            f"({error}). Received: dataset={dataset!r}"
        ) from None
    shape = tuple(ds.element_spec[image_key].shape)
    if None in shape:
        raise DatasetError(
            f"`dataset` {name!r} has images of varying size {shape}; resize "
            "them to one size first (e.g. into a 'folder:' dataset). "
            f"Received: dataset={dataset!r}"
        )
    ds = ds.map(lambda example: example[image_key])
    count = int(ds.cardinality())
    if count < 0:
        count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
    return _checked_images(ds, count, shape, dataset, split)


def _image_feature(features, dataset: str) -> str:
    import tensorflow_datasets as tfds

    keys = [
        key
        for key, feature in features.items()
        if isinstance(feature, tfds.features.Image)
    ]
    if not keys:
        raise DatasetError(
            f"`dataset` must be an image dataset; {dataset!r} has no image "
            f"feature (features: {sorted(features.keys())}). "
            f"Received: dataset={dataset!r}"
        )
    return "image" if "image" in keys else keys[0]


# ------------------------------------------------------------------ folder
def _load_folder(dataset: str, root: str, split: str) -> Images:
    import tensorflow_datasets as tfds
    from PIL import Image

    split_dir = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetError(
            f"`dataset` folder {root!r} does not exist; give a folder laid "
            f"out as {root}/{split}/LABEL/*.png. Received: dataset={dataset!r}"
        )
    # The files ImageFolder reads: split/label/*.jpg|png, one level deep.
    labels = sorted(os.listdir(split_dir)) if os.path.isdir(split_dir) else []
    files = [
        os.path.join(split_dir, label, name)
        for label in labels
        if os.path.isdir(os.path.join(split_dir, label))
        for name in sorted(os.listdir(os.path.join(split_dir, label)))
        if name.lower().endswith(_IMAGE_SUFFIXES)
    ]
    if not files:
        raise DatasetError(
            f"`dataset` folder {root!r} has no .jpg or .png images in "
            f"{split_dir}/LABEL/; lay it out as {root}/{split}/LABEL/*.png. "
            f"Received: dataset={dataset!r}"
        )
    first_file, first = files[0], None
    for path in files:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
        if mode not in _MODE_CHANNELS:
            raise DatasetError(
                f"`dataset` images must be grayscale, RGB or RGBA; {path} is "
                f"{mode}. Convert it. Received: dataset={dataset!r}"
            )
        found = (size[1], size[0], _MODE_CHANNELS[mode])
        if first is None:
            first = found
        elif found[:2] != first[:2]:
            raise DatasetError(
                f"`dataset` images must all have one size; {first_file} is "
                f"{first[1]}x{first[0]} but {path} is {found[1]}x{found[0]}. "
                f"Resize them to one size. Received: dataset={dataset!r}"
            )
        elif found[2] != first[2]:
            raise DatasetError(
                "`dataset` images must be all grayscale or all RGB; "
                f"{first_file} has {first[2]} channel(s) but {path} has "
                f"{found[2]}. Convert them to one mode. "
                f"Received: dataset={dataset!r}"
            )
    builder = tfds.folder_dataset.ImageFolder(root, shape=first, dtype=tf.uint8)
    ds = builder.as_dataset(split=split, shuffle_files=False)
    ds = ds.map(lambda example: example["image"])
    return _checked_images(ds, len(files), first, dataset, split)


def _checked_images(
    ds: tf.data.Dataset,
    count: int,
    shape: tuple,
    dataset: str,
    split: str,
) -> Images:
    if count == 0:
        raise DatasetError(
            f"`dataset` split {split!r} is empty; choose a split with "
            f"images. Received: dataset={dataset!r}"
        )
    if ds.element_spec.dtype != tf.uint8:
        ds = ds.map(lambda image: tf.cast(image, tf.uint8))
    return Images(
        dataset=ds,
        num_examples=count,
        image_shape=tuple(int(d) for d in shape),
        name=dataset,
        split=split,
    )
