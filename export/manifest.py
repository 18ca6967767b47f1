"""`MANIFEST.json`: SHA-256 of every exported file, and `verify`.

Each export directory (a SavedModel version directory or a TFLite directory)
holds a `MANIFEST.json` listing every other file with its size and SHA-256,
the signature contract (names, dtypes and shapes of every signature's inputs
and outputs) and what was exported. `verify_files(path)` recomputes the
hashes and refuses missing, extra or changed files;
`tf_vqvae.export.verify(path)` (in `verification.py`, above both targets)
also loads the artifact and checks its signatures against the contract.

The manifest needs only the Python standard library to check, so a deployment
can verify artifacts before anything imports TensorFlow:

    python -c "import hashlib, json; ..."   # or: vqvae verify PATH
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

MANIFEST_NAME = "MANIFEST.json"
FORMAT = "tf-vqvae-export"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class VerificationError(ValueError):
    """An export directory does not match its `MANIFEST.json`."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(root: str | os.PathLike) -> dict[str, dict]:
    """`{relative/posix/path: {"sha256": ..., "size": ...}}` of every file.

    Walks `root` recursively; `MANIFEST.json` itself is left out.
    """
    root = os.fspath(root)
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel == MANIFEST_NAME:
                continue
            files[rel] = {
                "sha256": sha256_file(path),
                "size": os.path.getsize(path),
            }
    return dict(sorted(files.items()))


def write_manifest(
    root: str | os.PathLike,
    kind: str,
    signatures: dict,
    metadata: dict,
) -> str:
    """Hashes every file under `root` and writes `root/MANIFEST.json`.

    Args:
        root: the export directory, complete except for the manifest.
        kind: `"saved_model"` or `"tflite"`.
        signatures: the signature contract, see `signature_contract`.
        metadata: what was exported (model configuration, options, versions).

    Returns:
        The manifest's path.
    """
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        **metadata,
        "signatures": signatures,
        "files": file_digests(root),
    }
    path = os.path.join(os.fspath(root), MANIFEST_NAME)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    return path


def read_manifest(root: str | os.PathLike) -> dict:
    """The parsed `MANIFEST.json` of `root`.

    Raises:
        VerificationError: if it is missing, unreadable or not ours.
    """
    path = os.path.join(os.fspath(root), MANIFEST_NAME)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise VerificationError(
            f"No {MANIFEST_NAME} in {os.fspath(root)!r}: not a tf-vqvae export "
            "directory (pass a SavedModel version directory or a TFLite "
            "export directory)."
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise VerificationError(f"Cannot read {path!r}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VerificationError(
            f"{path!r} is not a tf-vqvae manifest (expected "
            f'"format": "{FORMAT}").'
        )
    return manifest


def verify_files(root: str | os.PathLike) -> dict:
    """Checks every file of `root` against its manifest; returns the manifest.

    Raises:
        VerificationError: naming each missing, unexpected or changed file.
    """
    manifest = read_manifest(root)
    expected = manifest.get("files", {})
    actual = file_digests(root)
    problems = []
    for rel in sorted(set(expected) - set(actual)):
        problems.append(f"missing file {rel!r}")
    for rel in sorted(set(actual) - set(expected)):
        problems.append(f"unexpected file {rel!r}")
    for rel in sorted(set(expected) & set(actual)):
        if actual[rel] != expected[rel]:
            problems.append(
                f"{rel!r} was modified (SHA-256 {actual[rel]['sha256']}, "
                f"expected {expected[rel]['sha256']})"
            )
    if problems:
        raise VerificationError(
            f"{os.fspath(root)!r} does not match its {MANIFEST_NAME}: "
            + "; ".join(problems)
            + "."
        )
    return manifest


def compare_signatures(expected: dict, actual: dict, where: str) -> None:
    """Raises `VerificationError` if two signature contracts differ."""
    if expected == actual:
        return
    problems = []
    for name in sorted(set(expected) - set(actual)):
        problems.append(f"signature {name!r} is missing")
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"signature {name!r} is not in the manifest")
    for name in sorted(set(expected) & set(actual)):
        if expected[name] != actual[name]:
            problems.append(
                f"signature {name!r} is {json.dumps(actual[name])}, "
                f"expected {json.dumps(expected[name])}"
            )
    raise VerificationError(
        f"{where} does not have the signatures of its {MANIFEST_NAME}: "
        + "; ".join(problems)
        + "."
    )
