"""Constructor argument checks with Keras-style messages.

Every message names the argument, says what was expected and what came:
"`num_embeddings` must be a positive integer. Received: num_embeddings=0
(of type int)."
"""

from __future__ import annotations

import math


def describe(name: str, value) -> str:
    """`Received: name=value (of type T).`"""
    return f"Received: {name}={value!r} (of type {type(value).__name__})."


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raises `ValueError` unless `value` is an int >= `minimum` (0 or 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(
            f"`{name}` must be {kind} integer. {describe(name, value)}"
        )


def check_bool(name: str, value) -> None:
    """Raises `TypeError` unless `value` is `True` or `False` (a string
    such as "no" would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be True or False. {describe(name, value)}"
        )


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
    )
