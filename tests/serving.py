"""Test helper: run an exported SavedModel the way TF Serving does.

TF Serving loads the SavedModel into a C++ `Session` and feeds request
tensors to the signature's placeholders **without checking their shapes**
against the signature; Python's `Session.run` and `tf.saved_model.load`
check shapes client-side, so they cannot show what a server does with a
wrong-shaped request. `ServingSession` feeds through the same C++
`Session::Run` path with no client-side check, and `rest_predict` applies TF
Serving's REST rules (`instances` row format / `inputs` columnar format, HTTP
400 for `InvalidArgument`), so the in-graph validation of an export can be
tested, and REST examples produced, on a machine without a model server.
`Session::Run` without the client-side checks is reached through a private
TensorFlow API (`Session._call_tf_sessionrun`), so this lives with the tests
and is not installed.

    >>> session = ServingSession("models/vqvae/1")
    >>> status, body = rest_predict(session, {"signature_name": "encode",
    ...     "instances": images.tolist()})
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

# TF Serving maps Session::Run status codes to HTTP statuses like this.
_HTTP_STATUS = {
    tf.errors.InvalidArgumentError: 400,
    tf.errors.FailedPreconditionError: 400,
    tf.errors.OutOfRangeError: 400,
    tf.errors.NotFoundError: 404,
    tf.errors.AbortedError: 409,
    tf.errors.ResourceExhaustedError: 429,
    tf.errors.UnimplementedError: 501,
    tf.errors.UnavailableError: 503,
    tf.errors.DeadlineExceededError: 504,
}


class ServingSession:
    """A SavedModel loaded into a TF1 `Session`, run like TF Serving runs it.

    Args:
        export_dir: a SavedModel directory (e.g. `models/vqvae/1`).
        tags: the MetaGraph tag set (`serve`).
    """

    def __init__(self, export_dir: str | os.PathLike, tags=("serve",)):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(
                self.session, list(tags), os.fspath(export_dir)
            )
        self.signatures = {
            name: signature
            for name, signature in meta_graph.signature_def.items()
            if not name.startswith("__")
        }

    def input_dtypes(self, signature_name: str) -> dict[str, tf.DType]:
        signature = self._signature(signature_name)
        return {
            key: tf.dtypes.as_dtype(info.dtype)
            for key, info in signature.inputs.items()
        }

    def _signature(self, signature_name: str):
        if signature_name not in self.signatures:
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                f"Serving signature name: {signature_name!r} not found in "
                f"signature def. Available: {sorted(self.signatures)}",
            )
        return self.signatures[signature_name]

    def run(self, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
        """Runs one signature on numpy inputs, without shape checks.

        Raises:
            tf.errors.OpError: what the server would return, e.g.
                `InvalidArgumentError` from the in-graph validation.
        """
        signature = self._signature(signature_name)
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                f"Request inputs {sorted(inputs)} do not match the inputs "
                f"{sorted(signature.inputs)} of signature "
                f"{signature_name!r}.",
            )
        feeds = {}
        for key, info in signature.inputs.items():
            dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            tensor = self.graph.get_tensor_by_name(info.name)
            feeds[tensor._as_tf_output()] = np.asarray(inputs[key], dtype)
        keys = sorted(signature.outputs)
        fetches = [
            self.graph.get_tensor_by_name(
                signature.outputs[key].name
            )._as_tf_output()
            for key in keys
        ]
        # `_call_tf_sessionrun` is the C++ Session::Run TF Serving calls;
        # `Session.run` would reject the wrong shapes the graph must catch.
        values = self.session._call_tf_sessionrun(
            None, feeds, fetches, [], None
        )
        return dict(zip(keys, values, strict=True))

    def close(self) -> None:
        self.session.close()


def _to_json(value: np.ndarray):
    if value.dtype.kind == "f":
        # float32 values at the precision they have, like TF Serving.
        return json.loads(
            np.array2string(
                value,
                separator=",",
                threshold=np.inf,
                floatmode="unique",
                max_line_width=np.inf,
            ).replace("nan", "NaN")
        )
    return value.tolist()


def rest_predict(session: ServingSession, body: dict) -> tuple[int, dict]:
    """TF Serving's REST `:predict` on `session`: `(http_status, response)`.

    `{"signature_name": ..., "instances": [...]}` (row format: one entry per
    example, a value or `{input: value}`) answers `{"predictions": [...]}`;
    `{"signature_name": ..., "inputs": value or {input: value}}` (columnar)
    answers `{"outputs": value or {output: value}}`. Errors answer
    `{"error": message}` with TF Serving's HTTP status for the error code.
    """
    name = body.get("signature_name", "serving_default")
    try:
        dtypes = session.input_dtypes(name)
        input_names = sorted(dtypes)
        if "instances" in body:
            rows = body["instances"]
            if rows and all(isinstance(r, dict) for r in rows):
                inputs = {k: [r[k] for r in rows] for k in rows[0]}
            elif len(input_names) == 1:
                inputs = {input_names[0]: rows}
            else:
                raise tf.errors.InvalidArgumentError(
                    None,
                    None,
                    "instances must be objects naming the inputs "
                    f"{input_names} of signature {name!r}.",
                )
        elif "inputs" in body:
            value = body["inputs"]
            if isinstance(value, dict):
                inputs = value
            elif len(input_names) == 1:
                inputs = {input_names[0]: value}
            else:
                raise tf.errors.InvalidArgumentError(
                    None,
                    None,
                    f"inputs must be an object naming {input_names}.",
                )
        else:
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                "Missing 'inputs' or 'instances' key",
            )
        try:
            arrays = {
                k: np.asarray(v, dtypes[k].as_numpy_dtype)
                for k, v in inputs.items()
                if k in dtypes
            }
            arrays.update({k: v for k, v in inputs.items() if k not in dtypes})
        except (ValueError, TypeError) as e:
            raise tf.errors.InvalidArgumentError(None, None, str(e)) from None
        outputs = session.run(name, arrays)
    except tf.errors.OpError as e:
        return _HTTP_STATUS.get(type(e), 500), {"error": e.message}
    if "instances" in body:
        keys = sorted(outputs)
        count = len(next(iter(outputs.values())))
        if len(keys) == 1:
            predictions = _to_json(outputs[keys[0]])
        else:
            columns = {k: _to_json(outputs[k]) for k in keys}
            predictions = [
                {k: columns[k][i] for k in keys} for i in range(count)
            ]
        return 200, {"predictions": predictions}
    if len(outputs) == 1:
        return 200, {"outputs": _to_json(next(iter(outputs.values())))}
    return 200, {"outputs": {k: _to_json(v) for k, v in outputs.items()}}
