"""Checking a predict request before anything of it reaches the model.

The body must be a JSON object ``{"inputs": [...]}`` and nothing else; the batch must be
numbers only (no strings, booleans or nulls), of the declared shape per input, finite once
converted to the policy's dtype, within the bounds, and no larger than the batch limit. Each
failure is an :class:`InvalidRequest` with the HTTP status to answer and a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from bastion.core.errors import BastionError

__all__ = ["InputSpec", "InvalidRequest", "input_digest", "parse_inputs"]

_LITERALS = re.compile(rb"\b(true|false|null)\b")


class InvalidRequest(BastionError):
    """A request the gateway refuses before the model sees it; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InputSpec:
    """What one batch must look like."""

    shape: tuple[int, ...]
    bounds: tuple[float, float]
    max_batch: int
    max_body_bytes: int
    dtype: str = "float32"
    input_key: str = "inputs"


def _bad(status: int, message: str) -> NoReturn:
    raise InvalidRequest(status, message)


def _no_constant(name: str) -> Any:
    _bad(422, f"inputs must be finite numbers; {name} is not allowed")


def parse_inputs(body: bytes, spec: InputSpec) -> np.ndarray:
    """The batch in ``body`` as an array of ``spec.dtype`` and shape (N, *spec.shape)."""
    if len(body) > spec.max_body_bytes:
        _bad(413, f"the request body is {len(body)} bytes; the limit is {spec.max_body_bytes}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _bad(400, "the request body is not UTF-8 text")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        _bad(400, f"the request body is not valid JSON: {exc.msg} at position {exc.pos}")
    except RecursionError:
        _bad(400, "the request body nests too deeply")
    if not isinstance(data, dict):
        _bad(400, f'the body must be a JSON object {{"{spec.input_key}": [...]}}')
    extra = sorted(set(data) - {spec.input_key})
    if extra:
        _bad(
            422,
            f"unexpected field(s) {', '.join(map(repr, extra[:5]))}: send only {spec.input_key!r}",
        )
    if spec.input_key not in data:
        _bad(422, f"missing field {spec.input_key!r}")
    batch = data[spec.input_key]
    if not isinstance(batch, list):
        _bad(422, f"{spec.input_key!r} must be a list of inputs")
    if not batch:
        _bad(422, f"{spec.input_key!r} is empty: send at least one input")
    if len(batch) > spec.max_batch:
        _bad(413, f"{len(batch)} inputs in one request; the limit is {spec.max_batch}")
    if _LITERALS.search(body):
        _bad(422, "inputs must hold numbers only (no true, false or null)")
    try:
        raw = np.array(batch)
    except (ValueError, OverflowError):
        raw = None
    if raw is None or raw.dtype.kind not in "if":
        _bad(422, "inputs must be nested lists of numbers, every input of the same shape")
    shape = tuple(raw.shape[1:])
    if shape != spec.shape:
        _bad(422, f"each input must have shape {list(spec.shape)}, got {list(shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        x = raw.astype(spec.dtype)
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        _bad(422, f"inputs must be finite {spec.dtype} numbers (a value overflows or is NaN)")
    if lo < spec.bounds[0] or hi > spec.bounds[1]:
        _bad(
            422,
            f"inputs range over [{lo:g}, {hi:g}]; allowed is [{spec.bounds[0]:g}, "
            f"{spec.bounds[1]:g}]",
        )
    return x


def input_digest(x: np.ndarray) -> str:
    """SHA-256 of the batch as the model saw it (dtype, shape and values)."""
    h = hashlib.sha256()
    h.update(f"{x.dtype.str}{list(x.shape)}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()
