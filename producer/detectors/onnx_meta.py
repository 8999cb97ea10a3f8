"""Class names stored in an ONNX file's metadata, as Ultralytics' exporters write them.

YOLOv5 and YOLOv8/v11 exports put ``names`` in ``ModelProto.metadata_props`` as the ``str()`` of a
dict (``{0: 'person', 1: 'bicycle', ...}``) or a list. OpenCV DNN does not expose metadata and
the ``onnx`` package is a heavy dependency for one string, so the few protobuf fields needed are
read here: the top level of the model (field 14, ``metadata_props``) and its key/value entries.
"""

from __future__ import annotations

import ast
import json
import os
from typing import Any

__all__ = ["metadata", "names_from_metadata"]

_METADATA_PROPS = 14
_KEY, _VALUE = 1, 2


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or malformed protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes | memoryview) -> list[tuple[int, int, Any]]:
    """Top-level ``(number, wire type, value)`` of a protobuf message; nested ones stay bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, kind = tag >> 3, tag & 7
        value: Any
        if kind == 0:
            value, pos = _varint(data, pos)
        elif kind == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif kind == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif kind == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        out.append((number, kind, value))
    return out


def metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model file (empty when it has none or is unreadable)."""
    try:
        with open(path, "rb") as handle:
            data = memoryview(handle.read())
        props: dict[str, str] = {}
        for number, kind, value in _fields(data):
            if number != _METADATA_PROPS or kind != 2:
                continue
            entry = {n: bytes(v).decode("utf-8", "replace") for n, k, v in _fields(value) if k == 2}
            if _KEY in entry:
                props[entry[_KEY]] = entry.get(_VALUE, "")
        return props
    except (OSError, ValueError):
        return {}


def names_from_metadata(path: str | os.PathLike[str]) -> list[str] | None:
    """Class names from the model's ``names`` metadata, in class-id order, or None.

    Accepts a dict of id -> name (Ultralytics' ``str(dict)`` or JSON) or a list of names.
    """
    text = metadata(path).get("names")
    if not text:
        return None
    parsed: Any
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
    if isinstance(parsed, dict):
        try:
            by_id = {int(k): str(v) for k, v in parsed.items()}
        except (TypeError, ValueError):
            return None
        if sorted(by_id) != list(range(len(by_id))):
            return None  # gaps would shift every later label
        return [by_id[i] for i in range(len(by_id))]
    if isinstance(parsed, list | tuple) and all(isinstance(n, str) for n in parsed):
        return list(parsed)
    return None
