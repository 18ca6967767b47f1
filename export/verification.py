"""`verify`: an export directory against its `MANIFEST.json`, any target.

Sits above the targets: the manifest (`manifest.py`) says which kind of
export a directory holds, and the target module (`saved_model`, `tflite`)
reads the signatures of the artifact itself.
"""

from __future__ import annotations

import os

from tf_vqvae.export import manifest, saved_model, tflite
from tf_vqvae.export.manifest import MANIFEST_NAME, VerificationError


def verify(path: str | os.PathLike) -> dict:
    """Verifies an export directory: files, then loads and checks signatures.

    Accepts a SavedModel version directory (`OUT/<model_name>/<version>`),
    a model directory (every version in it is verified) or a TFLite export
    directory.

    Returns:
        The manifest (for a model directory: `{version: manifest}`).

    Raises:
        VerificationError: if any file or signature differs from the
            manifest, or the artifact does not load.
    """
    path = os.fspath(path)
    if not os.path.exists(os.path.join(path, MANIFEST_NAME)) and (
        os.path.isdir(path)
    ):
        versions = sorted(
            (name for name in os.listdir(path) if name.isdigit()), key=int
        )
        if versions:
            return {v: verify(os.path.join(path, v)) for v in versions}
    found = manifest.verify_files(path)
    kind = found.get("kind")
    if kind == "saved_model":
        actual = saved_model.signature_contract(path)
        saved_model.load_unverified(path)
    elif kind == "tflite":
        actual = tflite.signature_contract(path)
    else:
        raise VerificationError(
            f"Unknown export kind {kind!r} in {path!r}/{MANIFEST_NAME}."
        )
    manifest.compare_signatures(found["signatures"], actual, repr(path))
    return found
