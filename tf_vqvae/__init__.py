"""tf-vqvae: VQ-VAE for TensorFlow/Keras.

The public names load their modules (and TensorFlow) when first used, so
TensorFlow-free parts such as `tf_vqvae.options` and `vqvae --help` start
fast. The Keras classes are registered for `keras.saving.load_model` in
either import order: at `import tf_vqvae` when TensorFlow is already
imported, else as soon as `keras` is.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import threading
import warnings

from tf_vqvae.version import __version__

# Public name -> the module that defines it.
_PUBLIC = {
    "CodebookUsage": "tf_vqvae.metrics",
    "Decoder": "tf_vqvae.networks",
    "Encoder": "tf_vqvae.networks",
    "FiniteScalarQuantizer": "tf_vqvae.quantizers",
    "GatedPixelCNNBlock": "tf_vqvae.prior",
    "LogMelFrames": "tf_vqvae.spectral",
    "LookupFreeQuantizer": "tf_vqvae.quantizers",
    "MaskedConv2D": "tf_vqvae.prior",
    "PixelCNNPrior": "tf_vqvae.prior",
    "ResidualVectorQuantizer": "tf_vqvae.quantizers",
    "ResidualStack": "tf_vqvae.networks",
    "SpeakerClassifier": "tf_vqvae.speech_metrics",
    "VQVAE": "tf_vqvae.vqvae",
    "VectorQuantizer": "tf_vqvae.quantizers",
    "VectorQuantizerEMA": "tf_vqvae.quantizers",
    "WaveNetDecoder": "tf_vqvae.wavenet",
    "WaveNetPrior": "tf_vqvae.wavenet",
    "bits_per_dim": "tf_vqvae.evaluation",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _register() -> None:
    """Loads every public name (registering the Keras classes)."""
    for name in _PUBLIC:
        __getattr__(name)


def _initializing(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Runs `_register` as soon as TensorFlow and Keras are imported and no
    module of this package is half imported (TensorFlow and Keras import
    each other, and a submodule imported first, e.g. `from tf_vqvae import
    data`, imports TensorFlow before it is complete: registering then would
    import it again, half made). Keras finds a saved file's classes only
    among those registered (it imports no module a file names outside its
    own packages), so `import tf_vqvae` first must not leave
    `keras.saving.load_model` unable to load."""

    def __init__(self):
        # Per thread: set while asking the other finders (no recursion).
        self._local = threading.local()

    @staticmethod
    def _watched(name: str) -> bool:
        return name in ("tensorflow", "keras") or name.startswith("tf_vqvae.")

    def find_spec(self, name, path=None, target=None):
        if getattr(self._local, "finding", False) or not self._watched(name):
            return None
        # The spec the other finders give, its loader wrapped (a spec may
        # be asked for without an import: the finder stays until one ran).
        self._local.finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._local.finding = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module) -> None:
            exec_module(module)
            # `name` itself still counts as importing until this returns.
            busy = [
                other
                for other in list(sys.modules)
                if other != name and self._watched(other)
            ]
            if (
                self in sys.meta_path
                and "tensorflow" in sys.modules
                and "keras" in sys.modules
                and not any(map(_initializing, busy))
            ):
                sys.meta_path.remove(self)
                try:
                    _register()
                except Exception as error:  # noqa: BLE001
                    # The user's import of TensorFlow or Keras must not fail
                    # for this: the names still load (and register) on use.
                    warnings.warn(
                        "tf_vqvae could not register its Keras classes on "
                        f"import ({type(error).__name__}: {error}); use a "
                        "name (e.g. `from tf_vqvae import VQVAE`) before "
                        "`keras.saving.load_model`.",
                        stacklevel=2,
                    )

        spec.loader.exec_module = exec_then_register
        return spec


if "tensorflow" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _RegisterOnImport())
