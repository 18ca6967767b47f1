"""Input pipelines: image and audio datasets, batched for training.

Image sources, named by one string (the CLI's `--dataset`):

- `"photos"` (the default, offline): 32x32 tiles of the photographs that
  scikit-image ships (astronaut, coffee, chelsea, rocket, hubble_deep_field,
  immunohistochemistry, retina, colorwheel). The bottom eighth of each photo
  is held out as the `"test"` split, so test tiles never overlap train tiles.
- `"tfds:NAME[:SPLIT]"`: any TensorFlow Datasets image dataset already in
  `data_dir` (`cifar10`, `mnist`, `svhn_cropped`, `celeb_a`, ...).
- `"folder:PATH"`: a folder laid out `PATH/split/label/*.jpg|png`, in the
  order `tfds.folder_dataset.ImageFolder` reads it. All images must share one
  size and mode. Every file is checked (and the result cached) before use:
  a bad file raises `BadImageFileError` naming it, or is left out with
  `skip_bad_files=True`.

Audio sources (`dataset_modality(dataset) == "audio"`), waveforms at 16 kHz:

- `"speech[:split]"` (the audio default, offline): English sentences
  spoken by eSpeak NG voices, with phoneme alignments (`tf_vqvae.speech`);
  splits `"train"`, `"test"` (held-out sentences) and `"test_voices"`
  (held-out sentences and voices).
- `"audio-folder:PATH"`: WAV files laid out `PATH/split/SPEAKER/*.wav`
  (any PCM or float WAV; several channels are averaged; every file is
  resampled to 16 kHz). A `NAME.json` beside `NAME.wav` may give its
  `"text"` and `"alignment"` (the layout the speech corpus is written in).
- `"tfds:NAME[:SPLIT]"` of a dataset with an `Audio` feature
  (`speech_commands`, `librispeech`, ...).

`load_audio` returns `Utterances`; `audio_pipeline` cuts them into
fixed-length segments: seeded random crops for training, consecutive
segments for evaluation.

`load_images` returns the decoded images (`load_labels` their classes, for
a class-conditional prior); `training_pipeline` caches, shuffles,
batches and prefetches them so that the order of batches depends only on
`(seed, epoch)`, and starts at any global step, which is what makes a resumed
run bit-identical to an uninterrupted one:

    images = load_images("photos")
    dataset = training_pipeline(images, global_batch_size=64, seed=0)
    model.fit(dataset, steps_per_epoch=images.steps_per_epoch(64), epochs=10)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tf_vqvae.arg_checks import check_int
from tf_vqvae.audio import (
    SAMPLE_RATE,
    AudioFileError,
    _checked_int,
    read_wav,
    resample,
)
from tf_vqvae.options import DEFAULT_AUDIO_DATASET, DEFAULT_DATASET

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


class BadFileError(DatasetError):
    """A file of a folder dataset that cannot be used (the base of
    `BadImageFileError` and `BadAudioFileError`).

    Attributes:
        path: the file.
        reason: what is wrong with it, e.g. `"empty file (0 bytes)"`.
    """

    def __init__(self, message: str, path: str, reason: str):
        super().__init__(message)
        self.path = path
        self.reason = reason


def _skipped_summary(
    skipped: tuple[tuple[str, str], ...], kind: str, name: str, split: str
) -> str | None:
    """One line about the bad `kind` ("image", "audio") files a split left
    out (`None` if there are none)."""
    if not skipped:
        return None
    path, reason = skipped[0]
    files = "file" if len(skipped) == 1 else "files"
    return (
        f"Skipped {len(skipped)} bad {kind} {files} of {name!r} "
        f"split {split!r} (first: {path}: {reason})."
    )


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
        skipped: `(path, reason)` of each bad file left out (a `"folder:"`
            dataset loaded with `skip_bad_files=True`), in file order.
    """

    dataset: tf.data.Dataset
    num_examples: int
    image_shape: tuple[int, ...]
    name: str
    split: str
    skipped: tuple[tuple[str, str], ...] = ()

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full batches in one pass over the images.

        Raises:
            ValueError: `global_batch_size` is not a positive integer.
        """
        global_batch_size = _checked_int("global_batch_size", global_batch_size)
        return self.num_examples // global_batch_size

    def skipped_summary(self) -> str | None:
        """One line about the skipped files (`None` if there are none),
        e.g. `"Skipped 2 bad image files of 'folder:d' split 'train' (first:
        d/train/a/x.png: empty file (0 bytes))."`."""
        return _skipped_summary(self.skipped, "image", self.name, self.split)


_DATASET_FORMS = (
    "'photos[:split]', 'tfds:NAME[:split]' (e.g. 'tfds:cifar10'), "
    "'folder:PATH', 'speech[:split]' or 'audio-folder:PATH'"
)
IMAGE_KINDS = ("photos", "folder")
AUDIO_KINDS = ("speech", "audio-folder")


def parse_dataset(dataset: str) -> tuple[str, str, str | None]:
    """Splits a dataset string into `(kind, name, split)`.

    `kind` is `"photos"`, `"tfds"`, `"folder"`, `"speech"` or
    `"audio-folder"`; `split` is `None` when the string names none; a
    folder's `~` is expanded (`os.path.expanduser`). Raises `DatasetError`
    for an unknown kind.
    """
    if isinstance(dataset, str) and dataset:
        kind, _, rest = dataset.partition(":")
        if kind in ("photos", "speech"):
            return kind, kind, rest or None
        if kind == "tfds" and rest:
            name, _, split = rest.partition(":")
            return "tfds", name, split or None
        if kind in ("folder", "audio-folder") and rest:
            # A shell expands `~` only at the start of a word, not after
            # `folder:`.
            return kind, os.path.expanduser(rest), None
    raise DatasetError(
        f"`dataset` must be {_DATASET_FORMS}. Received: dataset={dataset!r}"
    )


def dataset_modality(dataset: str, data_dir: str | None = None) -> str:
    """`"image"` or `"audio"`: what the dataset string holds.

    Decided by the kind; for `"tfds:NAME"` by the builder's features (an
    `Audio` feature means audio), read offline from the registered builder
    without loading any data.

    Raises:
        DatasetError: an unknown kind or tfds name.
    """
    kind, name, _ = parse_dataset(dataset)
    if kind in AUDIO_KINDS:
        return "audio"
    if kind in IMAGE_KINDS:
        return "image"
    builder = _tfds_builder(dataset, name, data_dir)
    return "audio" if _audio_keys(builder.info.features) else "image"


def load_images(
    dataset: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | None = None,
    *,
    skip_bad_files: bool = False,
) -> Images:
    """Loads one split of a dataset as uint8 images.

    A `"folder:PATH"` split is checked file by file before anything else
    happens (`check_image_files`: header, pixel count, full decode; results
    cached under `image_check_cache_file(PATH/split)`), so a bad file is
    reported here, by name, and never fails inside `fit`.

    Args:
        dataset: `"photos[:split]"`, `"tfds:NAME[:split]"` or
            `"folder:PATH"` (see the module docstring). A split in the string
            wins over `split`.
        split: split to load when `dataset` names none (`"train"`,
            `"test"`, or for tfds any split expression like `"train[:90%]"`).
        data_dir: where tfds looks for prepared datasets (tfds' default when
            `None`); ignored by the other sources.
        skip_bad_files: for a `"folder:"` dataset, leave out files that are
            not usable images (unreadable, empty, not an image, truncated or
            corrupt, more than `MAX_IMAGE_PIXELS` pixels, a mode other than
            grayscale, RGB or RGBA) and list them in `Images.skipped`,
            instead of raising. Images of mixed sizes or channel counts are
            still an error. Ignored by the other sources.

    Returns:
        `Images` with a dataset of uint8 `(height, width, channels)` tensors.

    Raises:
        BadImageFileError: a `"folder:"` file is not a usable image (the
            message names the first one and counts them), unless
            `skip_bad_files`.
        DatasetError: unknown or missing dataset, empty folder (or every
            file bad), images of mixed sizes or modes (grayscale vs RGB),
            images of varying size.
    """
    kind, name, named_split = parse_dataset(dataset)
    split = named_split or split
    if kind in AUDIO_KINDS:
        raise DatasetError(
            f"`dataset` {dataset!r} holds audio, not images; load it with "
            f"`load_audio`. Received: dataset={dataset!r}"
        )
    if kind == "photos":
        return _load_photos(dataset, split)
    if kind == "tfds":
        return _load_tfds(dataset, name, split, data_dir)
    return _load_folder(dataset, name, split, skip_bad_files)


@dataclasses.dataclass(frozen=True)
class Labels:
    """The class of every image of a split, in `load_images`' order.

    Attributes:
        labels: int32 `(num_examples,)`, indices into `class_names`.
        class_names: the name of each class, e.g. the folder names of a
            `"folder:"` dataset.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]


def load_labels(
    dataset: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    skip_bad_files: bool = False,
) -> Labels:
    """The class labels of a split, aligned with `load_images`' images.

    - `"photos"`: the photograph each tile comes from (`PHOTO_NAMES`).
    - `"tfds:NAME"`: the dataset's `ClassLabel` feature (`"label"` if it
      has several), read without decoding the images.
    - `"folder:PATH"`: the class folder of each file
      (`PATH/split/LABEL/*.png`); the classes are the split's folder names
      in sorted order.

    Args:
        dataset, split, data_dir, skip_bad_files: as for `load_images` (pass
            the same values to get the same images).
        class_names: number the classes by these names instead of the
            split's own (e.g. a test split by the training split's classes).

    Returns:
        `Labels`.

    Raises:
        DatasetError: a tfds dataset without a `ClassLabel` feature, or a
            class not in `class_names`; and what `load_images` raises.
    """
    kind, name, named_split = parse_dataset(dataset)
    split = named_split or split
    if kind == "photos":
        _, labels = _photo_tiles_and_sources(split)
        names = PHOTO_NAMES
    elif kind == "tfds":
        labels, names = _tfds_labels(dataset, name, split, data_dir)
    else:
        ordered, _, _ = _folder_images(dataset, name, split, skip_bad_files)
        folders = [os.path.basename(os.path.dirname(p)) for p in ordered]
        names = tuple(sorted(set(folders)))
        index = {folder: i for i, folder in enumerate(names)}
        labels = np.asarray([index[f] for f in folders], "int32")
    if class_names is None:
        return Labels(labels=labels, class_names=tuple(names))
    class_names = tuple(class_names)
    index = {class_name: i for i, class_name in enumerate(class_names)}
    unknown = sorted(set(names[i] for i in np.unique(labels)) - set(index))
    if unknown:
        raise DatasetError(
            f"`dataset` {dataset!r} split {split!r} has classes that the "
            f"model was not trained on: {unknown[:5]}; its classes are "
            f"{list(class_names)[:20]}. Received: dataset={dataset!r}"
        )
    remap = np.asarray([index.get(n, -1) for n in names], "int32")
    return Labels(labels=remap[labels], class_names=class_names)


def _tfds_labels(
    dataset: str, name: str, split: str, data_dir: str | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(dataset, name, data_dir)
    features = builder.info.features
    keys = [
        key
        for key, feature in features.items()
        if isinstance(feature, tfds.features.ClassLabel)
    ]
    if not keys:
        raise DatasetError(
            f"`dataset` {name!r} has no class labels (no ClassLabel "
            f"feature; features: {sorted(features.keys())}); train an "
            f"unconditional prior. Received: dataset={dataset!r}"
        )
    key = "label" if "label" in keys else keys[0]
    skip = {
        other: tfds.decode.SkipDecoding()
        for other, feature in features.items()
        if isinstance(feature, tfds.features.Image)
    }
    ds = _tfds_split(builder, dataset, name, split, data_dir, decoders=skip)
    labels = ds.map(lambda example: example[key]).batch(4096)
    labels = np.concatenate([batch.numpy() for batch in labels])
    return labels.astype("int32"), tuple(features[key].names)


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
        global_batch_size: examples per step over all replicas (a positive
            integer).
        seed: shuffling seed (a non-negative integer).
        start_step: global step of the first batch.
        end_step: global step after the last batch (default: the end of
            the epoch `start_step` is in).
        shuffle_buffer_size: defaults to all examples (at most 10000).

    Returns:
        `tf.data.Dataset` of uint8 batches
        `(global_batch_size, height, width, channels)`.

    Raises:
        ValueError: `global_batch_size` or `seed` is not an integer (at
            least 1, at least 0).
        DatasetError: if the split has fewer images than one batch.
    """
    global_batch_size = _checked_int("global_batch_size", global_batch_size)
    seed = _checked_int("seed", seed, 0)
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
    """Images in their fixed order, batched (last batch may be smaller).

    Raises:
        ValueError: `batch_size` is not a positive integer.
    """
    batch_size = _checked_int("batch_size", batch_size)
    dataset = images.dataset
    if limit is not None:
        dataset = dataset.take(limit)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def first_images(images: Images, count: int) -> np.ndarray:
    """The first `count` images (uint8 numpy), e.g. a fixed validation set
    (all of them if there are fewer).

    Raises:
        ValueError: `count` is not a positive integer.
    """
    count = _checked_int("count", count)
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
    return _photo_tiles_and_sources(split)[0]


def _photo_tiles_and_sources(split: str) -> tuple[np.ndarray, np.ndarray]:
    """`photo_tiles(split)` and, per tile, the index in `PHOTO_NAMES` of
    the photograph it comes from (int32)."""
    from skimage import data as skimage_data

    if split not in ("train", "test"):
        raise DatasetError(
            "The 'photos' dataset has splits 'train' and 'test'. "
            f"Received: split={split!r}"
        )
    size = PHOTO_TILE_SIZE
    tiles, sources = [], []
    for source, photo_name in enumerate(PHOTO_NAMES):
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
                    sources.append(source)
    return np.stack(tiles).astype("uint8"), np.asarray(sources, "int32")


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
    builder = _tfds_builder(dataset, name, data_dir)
    image_key = _image_feature(builder.info.features, dataset)
    ds = _tfds_split(builder, dataset, name, split, data_dir)
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


def _tfds_builder(dataset: str, name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"`dataset` names no TensorFlow Datasets dataset: {name!r} is "
            "unknown; use a name from `tfds.list_builders()`, e.g. "
            f"'tfds:cifar10'. Received: dataset={dataset!r}"
        ) from None


def _tfds_split(
    builder,
    dataset: str,
    name: str,
    split: str,
    data_dir: str | None,
    decoders: dict | None = None,
) -> tf.data.Dataset:
    """The split's examples in a fixed order (the same for images and
    labels)."""
    import tensorflow_datasets as tfds

    try:
        return builder.as_dataset(
            split=split,
            shuffle_files=False,
            read_config=tfds.ReadConfig(
                shuffle_seed=0, interleave_cycle_length=1
            ),
            decoders=decoders,
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
# PIL's default decompression-bomb limit (a quarter GiB of 24-bit pixels).
MAX_IMAGE_PIXELS = 89_478_485
# Bumped whenever what a cached check means changes.
_CHECK_CACHE_FORMAT = 1
_BAD_FILE_ADVICE = "or pass --skip-bad-files (skip_bad_files=True)"
_UNREADABLE = "cannot be read"


class BadImageFileError(BadFileError):
    """A file of a `"folder:PATH"` dataset that cannot be used as an image
    (`path`, `reason`: see `BadFileError`)."""


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    """What `check_image_files` found out about one file.

    Attributes:
        path: the file.
        shape: `(height, width, channels)` as the pipeline decodes it, or
            `None` if it cannot be decoded.
        mode: PIL's mode from the header (`"RGB"`, `"L"`, ...), or `None` if
            the header is unreadable.
        reason: why the file cannot be used (`None` if it can).
        cached: whether the result came from the cache (nothing was read).
    """

    path: str
    shape: tuple[int, int, int] | None
    mode: str | None
    reason: str | None
    cached: bool = False


def image_check_cache_file(folder: str) -> str:
    """Where `load_images` caches the checks of the images in `folder`.

    A JSON file under `$XDG_CACHE_HOME/tf-vqvae/image-checks/` (default
    `~/.cache/tf-vqvae/...`), named by a hash of `folder`'s absolute path:
    nothing is ever written into a dataset folder.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:32]
    return os.path.join(base, "tf-vqvae", "image-checks", f"{key}.json")


def check_image_files(
    paths: Sequence[str], cache_file: str | None = None
) -> tuple[ImageCheck, ...]:
    """Checks that every file is an image the training pipeline can decode.

    Per file: its header (with PIL: format, size, mode; an image of more
    than `MAX_IMAGE_PIXELS` pixels is refused before any pixel is decoded),
    then a full decode with the pipeline's own decoder
    (`tf.io.decode_image`), run in parallel through `tf.data`, so a file
    that passes cannot fail later inside `fit`.

    With `cache_file`, results are kept there keyed by each file's absolute
    path, size, inode and modification and change times (and the TensorFlow
    version); a file whose key is unchanged is not read again. A missing or
    corrupt cache is ignored and rewritten (atomically: a temporary file and
    a rename); an unwritable one is left alone.

    Args:
        paths: image files.
        cache_file: JSON cache (e.g. `image_check_cache_file(folder)`), or
            `None` to check every file.

    Returns:
        One `ImageCheck` per path, in order.
    """
    paths = [str(path) for path in paths]
    cache = _read_check_cache(cache_file) if cache_file else {}
    checks: list[ImageCheck | None] = [None] * len(paths)
    # Per path: its absolute path and stat key, when its check can be cached.
    entries: list[tuple[str, list[int]] | None] = [None] * len(paths)
    headers: dict[int, tuple[int, int, str, str]] = {}
    for i, path in enumerate(paths):
        try:
            info = os.stat(path)
        except OSError as error:
            checks[i] = _unreadable(path, error)
            continue
        absolute = os.path.abspath(path)
        key = [info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns]
        checks[i] = _cached_check(path, key, cache.get(absolute))
        if checks[i] is not None:
            entries[i] = absolute, key
            continue
        header = _check_header(path, info)
        if isinstance(header, ImageCheck):
            checks[i] = header
            if header.reason.startswith(_UNREADABLE):
                # A file-system error (e.g. no permission) says nothing
                # about the content: the file is checked again next time.
                continue
        else:
            headers[i] = header
        entries[i] = absolute, key
    for i, check in _decoded_checks(paths, headers).items():
        checks[i] = check
    stale = len(cache) != sum(entry is not None for entry in entries) or any(
        not check.cached for check in checks
    )
    if cache_file and stale:
        fresh = {
            entry[0]: [
                entry[1],
                list(check.shape) if check.shape else None,
                check.mode,
                check.reason,
            ]
            for entry, check in zip(entries, checks)
            if entry is not None
        }
        _write_check_cache(cache_file, fresh)
    return tuple(checks)


def _cached_check(path: str, key: list[int], entry) -> ImageCheck | None:
    """The cached check of `path` if `entry` holds one for `key`."""
    try:
        cached_key, shape, mode, reason = entry
        if cached_key != key:
            return None
        shape = tuple(int(d) for d in shape) if shape is not None else None
        return ImageCheck(path, shape, mode, reason, cached=True)
    except (TypeError, ValueError):
        return None


def _unreadable(path: str, error: OSError) -> ImageCheck:
    reason = f"{_UNREADABLE} ({error.strerror or error})"
    return ImageCheck(path, None, None, reason)


def _check_header(
    path: str, info: os.stat_result
) -> ImageCheck | tuple[int, int, str, str]:
    """`(height, width, mode, format)` from the header, or a failed
    `ImageCheck`."""
    import warnings

    from PIL import Image

    def bad(reason, mode=None):
        return ImageCheck(path, None, mode, reason)

    if not stat.S_ISREG(info.st_mode):
        return bad("not a regular file")
    if info.st_size == 0:
        return bad("empty file (0 bytes)")
    try:
        with open(path, "rb") as file:
            start = file.read(16)
            file.seek(0)
            with warnings.catch_warnings():
                # The pixel limit is checked below, against MAX_IMAGE_PIXELS.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(file) as image:
                    (width, height), mode = image.size, image.mode
                    image_format = image.format
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = found.group(1) if found else "too many"
        return bad(_too_large(f"{pixels} pixels"))
    except Image.UnidentifiedImageError:
        return bad(f"no known image format (its first bytes: {start!r})")
    except Exception as error:
        if isinstance(error, OSError) and error.errno is not None:
            return _unreadable(path, error)
        # PIL's format plugins raise assorted types (OSError without an
        # errno, SyntaxError, ValueError, struct.error, ...) on a malformed
        # or truncated header.
        return bad(f"malformed header ({type(error).__name__}: {error})")
    if width * height > MAX_IMAGE_PIXELS:
        return bad(_too_large(f"{width}x{height} = {width * height} pixels"))
    if mode not in _MODE_CHANNELS:
        return bad(f"mode {mode}, not grayscale, RGB or RGBA", mode)
    return height, width, mode, image_format or "image"


def _too_large(size: str) -> str:
    return (
        f"too large: {size}, more than MAX_IMAGE_PIXELS = "
        f"{MAX_IMAGE_PIXELS} (a decompression bomb?)"
    )


def _decode_image_file(path: tf.Tensor, channels: int) -> tf.Tensor:
    """The pipeline's decoder: uint8 `(height, width, channels)`."""
    return tf.io.decode_image(
        tf.io.read_file(path),
        channels=channels,
        dtype=tf.uint8,
        expand_animations=False,
    )


def _decoded_checks(
    paths: list[str], headers: dict[int, tuple[int, int, str, str]]
) -> dict[int, ImageCheck]:
    """The checks of `paths[i]` for each `i` in `headers`, by decoding."""
    checks = {}
    by_channels: dict[int, list[int]] = {}
    for i, (_, _, mode, _) in headers.items():
        by_channels.setdefault(_MODE_CHANNELS[mode], []).append(i)
    for channels, indices in by_channels.items():
        shapes = _decoded_shapes([paths[i] for i in indices], channels)
        for i, shape in zip(indices, shapes):
            height, width, mode, image_format = headers[i]
            reason = None
            if isinstance(shape, str) and shape.startswith("Unknown image"):
                reason = (
                    f"{image_format} data, which TensorFlow cannot decode "
                    f"({shape})"
                )
            elif isinstance(shape, str):
                reason = f"truncated or corrupt {image_format} data ({shape})"
            elif shape != (height, width, channels):
                reason = (
                    f"its header says {width}x{height} but it decodes to "
                    f"{shape[1]}x{shape[0]}"
                )
            checks[i] = ImageCheck(
                paths[i], shape if reason is None else None, mode, reason
            )
    return checks


def _decoded_shapes(paths: list[str], channels: int) -> list:
    """Per path, the decoded `(height, width, channels)` or why decoding
    failed; decodes in parallel with tf.data, then once more, alone, each
    file that failed, for its error message."""
    indices = tf.data.Dataset.range(len(paths))
    decoded = tf.data.Dataset.zip(
        indices,
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string)),
    ).map(
        lambda i, path: (i, tf.shape(_decode_image_file(path, channels))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    found: list = [None] * len(paths)
    # ignore_errors drops a failing file; it is decoded again below.
    for batch in decoded.ignore_errors().batch(1024).as_numpy_iterator():
        for i, shape in zip(*batch):
            found[i] = tuple(int(d) for d in shape)
    for i, shape in enumerate(found):
        if shape is None:
            found[i] = _decode_error(paths[i], channels)
    return found


def _decode_error(path: str, channels: int) -> str | tuple[int, int, int]:
    try:
        image = _decode_image_file(tf.constant(path), channels)
    except tf.errors.OpError as error:
        message = re.sub(r"\{\{.*?\}\}\s*", "", error.message)
        return re.sub(r"\s*\[Op:.*$", "", message, flags=re.S).strip()
    return tuple(int(d) for d in image.shape)


def _read_check_cache(cache_file: str) -> dict:
    """`{absolute path: [stat key, shape, mode, reason]}`; empty if the
    cache is missing, unreadable or from another decoder or format."""
    try:
        with open(cache_file, encoding="utf-8") as file:
            content = json.load(file)
        if content["validity"] == _cache_validity():
            return dict(content["files"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return {}


def _write_check_cache(cache_file: str, files: dict) -> None:
    from tf_vqvae import atomic

    content = {"validity": _cache_validity(), "files": files}
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        atomic.write_text(cache_file, json.dumps(content))
    except OSError:
        pass  # No cache this time; the checks themselves stand.


def _cache_validity() -> dict:
    """What a cached check depends on besides the file itself."""
    return {
        "format": _CHECK_CACHE_FORMAT,
        "decoder": f"tensorflow {tf.__version__}",
        "max_image_pixels": MAX_IMAGE_PIXELS,
    }


def _folder_files(split_dir: str) -> list[str]:
    """The files ImageFolder reads: split/label/*.jpg|png, one level deep,
    sorted by label, then name."""
    labels = sorted(os.listdir(split_dir)) if os.path.isdir(split_dir) else []
    return [
        os.path.join(split_dir, label, name)
        for label in labels
        if os.path.isdir(os.path.join(split_dir, label))
        for name in sorted(os.listdir(os.path.join(split_dir, label)))
        if name.lower().endswith(_IMAGE_SUFFIXES)
    ]


def _image_folder_order(files: list[str], split: str) -> list[str]:
    """`files` in the order `tfds.folder_dataset.ImageFolder` reads them
    (sorted, then shuffled by `random.Random(split)`), so runs keep the
    data order they had when ImageFolder read the files."""
    import random

    files = list(files)
    random.Random(split).shuffle(files)
    return files


def _bad_file_error(bad: list[ImageCheck], dataset: str) -> DatasetError:
    first = bad[0]
    if first.mode is not None and first.mode not in _MODE_CHANNELS:
        return BadImageFileError(
            f"`dataset` images must be grayscale, RGB or RGBA; {first.path} "
            f"is {first.mode}. Convert it, {_BAD_FILE_ADVICE}. "
            f"Received: dataset={dataset!r}",
            first.path,
            first.reason,
        )
    others = f" ({len(bad)} bad files in all)" if len(bad) > 1 else ""
    return BadImageFileError(
        f"`dataset` file {first.path!r} is not a readable image: "
        f"{first.reason}{others}. Fix or remove "
        f"{'them' if others else 'it'}, {_BAD_FILE_ADVICE}. "
        f"Received: dataset={dataset!r}",
        first.path,
        first.reason,
    )


def _load_folder(
    dataset: str, root: str, split: str, skip_bad_files: bool = False
) -> Images:
    ordered, shape, bad = _folder_images(dataset, root, split, skip_bad_files)
    ds = tf.data.Dataset.from_tensor_slices(
        tf.constant(ordered, tf.string)
    ).map(
        lambda path: tf.ensure_shape(_decode_image_file(path, shape[2]), shape),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    images = _checked_images(ds, len(ordered), shape, dataset, split)
    return dataclasses.replace(
        images, skipped=tuple((check.path, check.reason) for check in bad)
    )


def _folder_images(
    dataset: str, root: str, split: str, skip_bad_files: bool
) -> tuple[list[str], tuple[int, int, int], list[ImageCheck]]:
    """The usable files of a split in the order they are read, their
    shape, and the bad files (an error unless `skip_bad_files`)."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetError(
            f"`dataset` folder {root!r} does not exist; give a folder laid "
            f"out as {root}/{split}/LABEL/*.png. Received: dataset={dataset!r}"
        )
    files = _folder_files(split_dir)
    if not files:
        raise DatasetError(
            f"`dataset` folder {root!r} has no .jpg or .png images in "
            f"{split_dir}/LABEL/; lay it out as {root}/{split}/LABEL/*.png. "
            f"Received: dataset={dataset!r}"
        )
    checks = check_image_files(files, image_check_cache_file(split_dir))
    bad = [check for check in checks if check.reason is not None]
    if bad and not skip_bad_files:
        raise _bad_file_error(bad, dataset)
    good = [check for check in checks if check.reason is None]
    if not good:
        raise DatasetError(
            f"`dataset` folder {root!r} has no readable images in "
            f"{split_dir}/LABEL/: all {len(bad)} files are bad (first: "
            f"{bad[0].path}: {bad[0].reason}). Fix or replace them. "
            f"Received: dataset={dataset!r}"
        )
    first = good[0]
    for check in good[1:]:
        if check.shape[:2] != first.shape[:2]:
            raise DatasetError(
                f"`dataset` images must all have one size; {first.path} is "
                f"{first.shape[1]}x{first.shape[0]} but {check.path} is "
                f"{check.shape[1]}x{check.shape[0]}. Resize them to one "
                f"size. Received: dataset={dataset!r}"
            )
        if check.shape[2] != first.shape[2]:
            raise DatasetError(
                "`dataset` images must be all grayscale or all RGB; "
                f"{first.path} has {first.shape[2]} channel(s) but "
                f"{check.path} has {check.shape[2]}. Convert them to one "
                f"mode. Received: dataset={dataset!r}"
            )
    skipped = {check.path for check in bad}
    ordered = [
        path
        for path in _image_folder_order(files, split)
        if path not in skipped
    ]
    return ordered, first.shape, bad


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


# ------------------------------------------------------------------- audio
_AUDIO_SUFFIX = ".wav"
# Sidecar speaker classes of a tfds audio dataset, by feature name.
_TFDS_SPEAKER_KEYS = ("speaker", "speaker_id")
_TFDS_AUDIO_KEYS = ("audio", "speech")


class BadAudioFileError(BadFileError):
    """A file of an `"audio-folder:PATH"` dataset that cannot be used
    (`path`: the `.wav`, or the `.json` beside it; `reason`: see
    `BadFileError`)."""


@dataclasses.dataclass(frozen=True)
class Utterances:
    """The waveforms of one split of an audio dataset, at 16 kHz.

    Attributes:
        name: the dataset string they came from.
        split: the split name.
        waveforms: float32 `(samples,)` in [-1, 1], one per utterance.
        speakers: int32 `(num_utterances,)`, indices into `speaker_names`.
        speaker_names: the id -> name table, the same for every split of a
            dataset (so held-out speakers have ids too).
        texts: what each utterance says, or `None` if unknown.
        alignments: per utterance an int32 `(num_phonemes, 3)` array of
            `start_sample, end_sample, phoneme_id` (16 kHz samples, ids into
            `phonemes`), or `None` if unknown.
        phonemes: the id -> phoneme name table (the same for every split),
            or `None`.
        sample_rate: always `SAMPLE_RATE` (16,000 Hz).
        skipped: `(path, reason)` of each bad file left out
            (`skip_bad_files=True`), in file order.
    """

    name: str
    split: str
    waveforms: list[np.ndarray]
    speakers: np.ndarray
    speaker_names: tuple[str, ...]
    texts: list[str] | None = None
    alignments: list[np.ndarray] | None = None
    phonemes: tuple[str, ...] | None = None
    sample_rate: int = SAMPLE_RATE
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.waveforms)

    @property
    def num_samples(self) -> int:
        """Samples over all utterances."""
        return int(sum(len(w) for w in self.waveforms))

    def seconds(self) -> float:
        """Duration of all utterances in seconds."""
        return self.num_samples / self.sample_rate

    def skipped_summary(self) -> str | None:
        """One line about the skipped files (`None` if there are none)."""
        return _skipped_summary(self.skipped, "audio", self.name, self.split)


def load_audio(
    dataset: str = DEFAULT_AUDIO_DATASET,
    split: str = "train",
    data_dir: str | None = None,
    *,
    skip_bad_files: bool = False,
    corpus=None,
    cache_dir: str | None = None,
) -> Utterances:
    """Loads one split of an audio dataset as 16 kHz waveforms.

    Sample-rate policy: every source is resampled to 16 kHz
    (`tf_vqvae.audio.resample`); several channels are averaged to mono.

    - `"speech[:split]"`: the eSpeak NG corpus (`tf_vqvae.speech`), built
      into the cache on first use; splits `"train"`, `"test"`,
      `"test_voices"`; with texts and phoneme alignments.
    - `"audio-folder:PATH"`: `PATH/split/SPEAKER/*.wav`, in order of
      speaker folder, then file name. Speakers are the folder names over
      all splits of `PATH`, sorted. A `NAME.json` beside `NAME.wav` with
      `"text"` and `"alignment"` (`[[start, end, phoneme], ...]` in the
      WAV's samples; `"sample_rate"` if other than the WAV's) gives texts
      and alignments when every file of the split has them; the phoneme
      table is the sorted names over all splits. Every file is read before
      anything else happens, so a bad one is reported here, by name.
    - `"tfds:NAME[:SPLIT]"`: the dataset's `Audio` feature (`"audio"` or
      `"speech"` if it has several); integer samples are 16-bit PCM (tfds
      keeps them in int16 or int64) except int32 (32-bit). Speakers come
      from a `ClassLabel` feature `"speaker"` or `"speaker_id"`, else every
      utterance has speaker 0 named `"all"`; texts from a `"text"` feature.

    Args:
        dataset: the dataset string (a split in it wins over `split`).
        split: the split to load when `dataset` names none.
        data_dir: where tfds looks for prepared datasets.
        skip_bad_files: for `"audio-folder:"`, leave out unusable files
            (unreadable, not WAV, truncated, an unsupported encoding, no
            samples, float samples outside [-1, 1] or not finite, a bad
            `.json` sidecar) and list them in
            `Utterances.skipped` instead of raising.
        corpus: the `tf_vqvae.speech.CorpusConfig` of `"speech"` (default
            `tf_vqvae.speech.DEFAULT_CORPUS`).
        cache_dir: where the speech corpus is cached (default
            `tf_vqvae.speech.cache_dir()`).

    Returns:
        `Utterances`.

    Raises:
        BadAudioFileError: an `"audio-folder:"` file cannot be used (the
            message names the first one and counts them), unless
            `skip_bad_files`.
        DatasetError: an image dataset, an unknown split, a missing or
            empty folder (or every file bad), a tfds dataset without audio
            or without a sample rate, or with float samples outside [-1, 1].
    """
    kind, name, named_split = parse_dataset(dataset)
    split = named_split or split
    if kind in IMAGE_KINDS or (
        kind == "tfds" and dataset_modality(dataset, data_dir) != "audio"
    ):
        raise DatasetError(
            f"`dataset` {dataset!r} holds images, not audio; give an audio "
            f"dataset ('speech', 'audio-folder:PATH' or a tfds dataset with "
            f"an Audio feature). Received: dataset={dataset!r}"
        )
    if kind == "speech":
        return _load_speech(dataset, split, corpus, cache_dir)
    if kind == "tfds":
        return _load_tfds_audio(dataset, name, split, data_dir)
    return _load_audio_folder(dataset, name, split, skip_bad_files)


def _load_speech(dataset: str, split: str, corpus, cache_dir) -> Utterances:
    from tf_vqvae import speech

    if split not in speech.SPLITS:
        raise DatasetError(
            "The 'speech' dataset has splits 'train', 'test' and "
            f"'test_voices'. Received: split={split!r}"
        )
    root = speech.corpus_dir(corpus or speech.DEFAULT_CORPUS, cache_dir)
    return _load_audio_folder(dataset, root, split, skip_bad_files=False)


def _audio_folder_files(split_dir: str) -> list[tuple[str, str]]:
    """`(speaker, path)` of each `split_dir/SPEAKER/*.wav`, sorted."""
    speakers = sorted(os.listdir(split_dir)) if os.path.isdir(split_dir) else []
    return [
        (speaker, os.path.join(split_dir, speaker, name))
        for speaker in speakers
        if os.path.isdir(os.path.join(split_dir, speaker))
        for name in sorted(os.listdir(os.path.join(split_dir, speaker)))
        if name.lower().endswith(_AUDIO_SUFFIX)
    ]


def _audio_folder_tables(root: str) -> tuple[tuple[str, ...], list[str]]:
    """The speakers over all splits of `root` and the sidecar files."""
    speakers, sidecars = set(), []
    for split in sorted(os.listdir(root)):
        split_dir = os.path.join(root, split)
        for speaker, path in _audio_folder_files(split_dir):
            speakers.add(speaker)
            sidecars.append(os.path.splitext(path)[0] + ".json")
    return tuple(sorted(speakers)), sidecars


def _read_sidecar(path: str, rate: int, length: int) -> dict | None:
    """The `.json` beside a WAV file of `rate` Hz, `length` samples once
    at 16 kHz: text and alignment at 16 kHz (`None` if there is none).
    Raises `AudioFileError` for a bad one."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        raise AudioFileError(
            path, f"unreadable JSON sidecar ({error})"
        ) from None
    if not isinstance(content, dict):
        raise AudioFileError(path, "sidecar is not a JSON object")
    found = {}
    if "text" in content:
        if not isinstance(content["text"], str):
            raise AudioFileError(path, "sidecar 'text' is not a string")
        found["text"] = content["text"]
    if "alignment" in content:
        sidecar_rate = content.get("sample_rate", rate)
        try:
            check_int("sample_rate", sidecar_rate)
        except ValueError:
            raise AudioFileError(
                path,
                "sidecar 'sample_rate' is not a positive integer "
                f"({sidecar_rate!r})",
            ) from None
        scale = SAMPLE_RATE / sidecar_rate
        try:
            rows = [
                (int(start), int(end), str(name))
                for start, end, name in content["alignment"]
            ]
        except (TypeError, ValueError):
            raise AudioFileError(
                path, "sidecar 'alignment' is not [[start, end, phoneme], ...]"
            ) from None
        rows = [
            (min(round(s * scale), length), min(round(e * scale), length), n)
            for s, e, n in rows
        ]
        if any(
            not 0 <= s < e or (i and s < rows[i - 1][1])
            for i, (s, e, _) in enumerate(rows)
        ):
            raise AudioFileError(
                path,
                "sidecar 'alignment' intervals must be non-empty, in order "
                "and inside the audio",
            )
        found["alignment"] = rows
    return found


def _range_problem(waveform: np.ndarray) -> str | None:
    """Why samples as read are not a waveform in [-1, 1] (float WAV data
    is read as it is, not clipped), or `None`."""
    finite = np.isfinite(waveform)
    if not finite.all():
        index = int(np.argmin(finite))
        value = float(waveform[index])
        return f"samples that are not finite (sample {index} is {value})"
    peak = float(np.abs(waveform).max(initial=0.0))
    if peak > 1.0:
        return f"samples outside [-1, 1] (peak {peak:.4g})"
    return None


def _phoneme_table(sidecars: list[str]) -> tuple[str, ...]:
    names = set()
    for path in sidecars:
        try:
            with open(path, encoding="utf-8") as file:
                rows = json.load(file).get("alignment") or []
            names.update(str(row[2]) for row in rows)
        except (OSError, ValueError, AttributeError, TypeError, IndexError):
            continue  # Reported when its own split is loaded.
    return tuple(sorted(names))


def _load_audio_folder(
    dataset: str, root: str, split: str, skip_bad_files: bool
) -> Utterances:
    split_dir = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetError(
            f"`dataset` folder {root!r} does not exist; give a folder laid "
            f"out as {root}/{split}/SPEAKER/*.wav. "
            f"Received: dataset={dataset!r}"
        )
    files = _audio_folder_files(split_dir)
    if not files:
        raise DatasetError(
            f"`dataset` folder {root!r} has no .wav files in "
            f"{split_dir}/SPEAKER/; lay it out as {root}/{split}/SPEAKER/"
            f"*.wav. Received: dataset={dataset!r}"
        )
    speaker_names, sidecar_paths = _audio_folder_tables(root)
    speaker_ids = {name: i for i, name in enumerate(speaker_names)}
    waveforms, speakers, sidecars, bad = [], [], [], []
    for speaker, path in files:
        try:
            waveform, rate = read_wav(path)
            if len(waveform) == 0:
                raise AudioFileError(path, "no samples")
            problem = _range_problem(waveform)
            if problem:
                raise AudioFileError(path, problem)
            # In range here; `resample` clips its filter's overshoot.
            waveform = resample(waveform, rate)
            sidecar = _read_sidecar(
                os.path.splitext(path)[0] + ".json", rate, len(waveform)
            )
        except AudioFileError as error:
            bad.append((error.path, error.reason))
            continue
        waveforms.append(waveform)
        speakers.append(speaker_ids[speaker])
        sidecars.append(sidecar or {})
    if bad and not skip_bad_files:
        path, reason = bad[0]
        others = f" ({len(bad)} bad files in all)" if len(bad) > 1 else ""
        raise BadAudioFileError(
            f"`dataset` file {path!r} is not usable audio: {reason}{others}. "
            f"Fix or remove {'them' if others else 'it'}, {_BAD_FILE_ADVICE}. "
            f"Received: dataset={dataset!r}",
            path,
            reason,
        )
    if not waveforms:
        path, reason = bad[0]
        raise DatasetError(
            f"`dataset` folder {root!r} has no readable audio in "
            f"{split_dir}/SPEAKER/: all {len(bad)} files are bad (first: "
            f"{path}: {reason}). Fix or replace them. "
            f"Received: dataset={dataset!r}"
        )
    texts = alignments = phonemes = None
    if all("text" in sidecar for sidecar in sidecars):
        texts = [sidecar["text"] for sidecar in sidecars]
    if all("alignment" in sidecar for sidecar in sidecars):
        phonemes = _phoneme_table(sidecar_paths)
        index = {name: i for i, name in enumerate(phonemes)}
        alignments = [
            np.asarray(
                [(s, e, index[n]) for s, e, n in sidecar["alignment"]], "int32"
            ).reshape(-1, 3)
            for sidecar in sidecars
        ]
    return Utterances(
        name=dataset,
        split=split,
        waveforms=waveforms,
        speakers=np.asarray(speakers, "int32"),
        speaker_names=speaker_names,
        texts=texts,
        alignments=alignments,
        phonemes=phonemes,
        skipped=tuple(bad),
    )


def _audio_keys(features) -> list[str]:
    import tensorflow_datasets as tfds

    keys = [
        key
        for key, feature in features.items()
        if isinstance(feature, tfds.features.Audio)
    ]
    preferred = [key for key in _TFDS_AUDIO_KEYS if key in keys]
    return preferred + [key for key in keys if key not in preferred]


def _load_tfds_audio(
    dataset: str, name: str, split: str, data_dir: str | None
) -> Utterances:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(dataset, name, data_dir)
    features = builder.info.features
    key = _audio_keys(features)[0]
    rate = features[key].sample_rate
    if not rate:
        raise DatasetError(
            f"`dataset` {name!r} does not say the sample rate of its audio "
            f"feature {key!r}; convert it to an 'audio-folder:' dataset. "
            f"Received: dataset={dataset!r}"
        )
    dtype = np.dtype(features[key].np_dtype)
    if dtype.kind in "iu":
        scale = 2.0**31 if dtype.itemsize == 4 else 2.0**15
    else:
        scale = 1.0
    features = dict(features.items())
    speaker_key = next(
        (
            k
            for k in _TFDS_SPEAKER_KEYS
            if isinstance(features.get(k), tfds.features.ClassLabel)
        ),
        None,
    )
    has_text = isinstance(features.get("text"), tfds.features.Text)
    ds = _tfds_split(builder, dataset, name, split, data_dir)
    waveforms, speakers, texts = [], [], []
    for number, example in enumerate(ds.as_numpy_iterator()):
        samples = np.asarray(example[key], np.float64) / scale
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        problem = _range_problem(samples)
        if problem:
            raise DatasetError(
                f"`dataset` example {number} of split {split!r} is not "
                f"usable audio: {problem}. Received: dataset={dataset!r}"
            )
        waveforms.append(resample(samples.astype(np.float32), int(rate)))
        speakers.append(int(example[speaker_key]) if speaker_key else 0)
        if has_text:
            texts.append(example["text"].decode("utf-8"))
    if not waveforms:
        raise DatasetError(
            f"`dataset` split {split!r} is empty; choose a split with "
            f"audio. Received: dataset={dataset!r}"
        )
    names = tuple(features[speaker_key].names) if speaker_key else ("all",)
    return Utterances(
        name=dataset,
        split=split,
        waveforms=waveforms,
        speakers=np.asarray(speakers, "int32"),
        speaker_names=names,
        texts=texts if has_text else None,
    )


def audio_pipeline(
    utterances: Utterances,
    segment_length: int,
    global_batch_size: int,
    *,
    seed: int,
    training: bool = True,
) -> tf.data.Dataset:
    """Fixed-length segments of the utterances, batched.

    Training: an endless stream; epoch `e` visits every utterance once in
    a random order drawn by a stateless RNG seeded by `(seed, -1 - e)`, and
    takes from it a crop of `segment_length` samples at an offset drawn by
    a stateless RNG seeded by `(seed, position in the stream)` (an
    utterance shorter than that is zero-padded at the end); the same
    `seed` gives the same batches, on every iteration of the dataset (a
    seeded `shuffle` that reshuffles each iteration would not: `fit` under
    `MirroredStrategy` iterates it once more than on one device, and
    trained on other batches). Evaluation: each utterance cut into consecutive
    segments once, the last one zero-padded, in order; the last batch may
    be smaller.

    Args:
        utterances: from `load_audio`.
        segment_length: samples per segment.
        global_batch_size: segments per batch over all replicas.
        seed: the order and crops of training, a non-negative integer
            (`None` is refused: there is no unseeded mode, the batches must
            be the same on every iteration); ignored when not `training`.
        training: random crops, repeated (`True`) or every segment once.

    Returns:
        `tf.data.Dataset` of dicts `{"audio": float32 (batch,
        segment_length, 1), "speaker": int32 (batch,)}`.

    Raises:
        ValueError: `segment_length` or `global_batch_size` is not a
            positive integer, or (training) `seed` not a non-negative one.
        DatasetError: no utterances.
    """
    segment_length = _checked_int("segment_length", segment_length)
    global_batch_size = _checked_int("global_batch_size", global_batch_size)
    if training:
        seed = _checked_int("seed", seed, 0)
    if len(utterances) == 0:
        raise DatasetError(
            f"{utterances.name!r} split {utterances.split!r} has no utterances."
        )
    lengths = np.asarray([len(w) for w in utterances.waveforms], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = tf.constant(np.concatenate(utterances.waveforms).astype(np.float32))
    speakers = tf.constant(utterances.speakers, tf.int32)
    lengths_t, starts_t = tf.constant(lengths), tf.constant(starts)

    def segment(index, offset):
        take = tf.minimum(lengths_t[index] - offset, segment_length)
        take = tf.maximum(take, 0)
        piece = tf.slice(flat, [starts_t[index] + offset], [take])
        piece = tf.pad(piece, [[0, segment_length - take]])
        return {
            "audio": tf.reshape(piece, (segment_length, 1)),
            "speaker": speakers[index],
        }

    if training:
        count = len(lengths)

        def epoch_order(epoch):
            # `-1 - epoch` < 0: never the seed of a crop.
            keys = tf.random.stateless_uniform(
                [count],
                seed=tf.stack([tf.constant(int(seed), tf.int64), -1 - epoch]),
            )
            order = tf.argsort(keys, stable=True)
            return tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64))

        order = tf.data.Dataset.counter().flat_map(epoch_order)

        def crop(position, index):
            room = tf.maximum(lengths_t[index] - segment_length, 0)
            offset = tf.random.stateless_uniform(
                [],
                seed=tf.stack([tf.constant(int(seed), tf.int64), position]),
                minval=0,
                maxval=room + 1,
                dtype=tf.int64,
            )
            return segment(index, offset)

        stream = order.enumerate().map(
            crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        stream = stream.batch(global_batch_size, drop_remainder=True)
    else:
        index, offset = [], []
        for i, length in enumerate(lengths):
            for start in range(0, max(int(length), 1), segment_length):
                index.append(i)
                offset.append(start)
        stream = tf.data.Dataset.from_tensor_slices(
            (np.asarray(index, np.int64), np.asarray(offset, np.int64))
        ).map(segment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        stream = stream.batch(global_batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    options.deterministic = True
    return stream.prefetch(tf.data.AUTOTUNE).with_options(options)
