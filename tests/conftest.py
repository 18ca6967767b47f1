"""Test session set-up: quiet TensorFlow, two logical CPU devices, a
cache directory of the session's own."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The image-check cache (`tf_vqvae.data.image_check_cache_file`) lives under
# $XDG_CACHE_HOME: tests, and the `vqvae` processes they start, never write
# the user's ~/.cache.
_CACHE_HOME = tempfile.mkdtemp(prefix="tf-vqvae-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
atexit.register(shutil.rmtree, _CACHE_HOME, ignore_errors=True)

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, configured before TensorFlow initialises its devices, so
# MirroredStrategy tests can compare 1 and 2 replicas on this machine.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
# TF32 would make GPU runs differ from the numpy references.
tf.config.experimental.enable_tensor_float_32_execution(False)

REPLICA_DEVICES = ["/cpu:0", "/cpu:1"]


def mirrored_strategy() -> tf.distribute.MirroredStrategy:
    """The process' one MirroredStrategy over the two logical CPUs (shared
    with `vqvae train --strategy mirrored`, see `tf_vqvae.distribute`)."""
    from tf_vqvae.distribute import mirrored_strategy as shared

    return shared(REPLICA_DEVICES)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
