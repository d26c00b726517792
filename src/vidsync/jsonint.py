"""Integers as JSON carries them.

JSON has one number type, and JSON Schema (so the OpenAPI document) counts ``5.0`` as the integer
5: a client whose JSON library writes whole floats that way sends a valid request, and the server
must read it as the client meant. Booleans are not numbers, whatever Python says.
"""

from __future__ import annotations


def json_int(value: object) -> int | None:
    """The integer ``value`` stands for, or None if it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
