"""The bytes of one drive-log message: named tensors at one time.

Written as a safetensors buffer (`MESSAGE_ENCODING`): an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range, then the raw little-endian bytes; the time is the
header's `__metadata__.time_s`. Any safetensors reader opens a message (`safetensors.numpy.load(data)`), and
decoding is a copy of the bytes, not a text decode: the base64-in-JSON messages of format 1 spent most of a
pretraining read in `b64decode` and `json.loads`. Those messages (`LEGACY_ENCODING`) are still read.

The parser here is drivestack's own, so a hostile message fails as a `ValueError` naming what is wrong
(header length, dtype, byte range) before anything is allocated from its numbers.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save

MESSAGE_ENCODING = "safetensors"
LEGACY_ENCODING = "json"  # format 1: {"time_s": t, "tensors": {name: {dtype, shape, data (base64)}}}
_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "I64": "int64", "I32": "int32", "U8": "uint8",
           "BOOL": "bool"}  # fmt: skip
DTYPE_NAMES = tuple(_DTYPES.values())
_TIME = "time_s"


def encode(time_s: float, tensors: Mapping[str, Any]) -> bytes:
    """One message's bytes (module docstring); tensors may be torch tensors or numpy arrays."""
    arrays = {}
    for name, value in tensors.items():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if array.dtype.name not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} is not one of {', '.join(DTYPE_NAMES)}")
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), order="C")  # 0-d stays 0-d
    return save(arrays, metadata={_TIME: repr(float(time_s))})


def decode(data: bytes, encoding: str) -> tuple[float, dict[str, np.ndarray]]:
    """(time, tensors) of a message in `encoding`; a malformed one raises `ValueError` saying what is wrong."""
    if encoding == MESSAGE_ENCODING:
        return _decode_safetensors(data)
    if encoding == LEGACY_ENCODING:
        return _decode_json(data)
    raise ValueError(f"message encoding {encoding!r} is not {MESSAGE_ENCODING!r} or {LEGACY_ENCODING!r}")


def _decode_safetensors(data: bytes) -> tuple[float, dict[str, np.ndarray]]:
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes, shorter than the 8-byte header length")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError(f"header of {length} bytes in a message of {len(data)}")
    header = json.loads(data[8 : 8 + length])
    if not isinstance(header, dict) or not all(isinstance(item, dict) for item in header.values()):
        raise ValueError("the header is not a JSON object of JSON objects")
    body = memoryview(data)[8 + length :]
    time_s = float(header.pop("__metadata__", {})[_TIME])
    tensors = {}
    for name, item in header.items():
        dtype = np.dtype(_DTYPES[item["dtype"]]) if item.get("dtype") in _DTYPES else None
        if dtype is None:
            raise ValueError(f"tensor {name!r}: unknown dtype {item.get('dtype')!r}")
        shape, (start, end) = [int(n) for n in item["shape"]], item["data_offsets"]
        size = math.prod(shape) * dtype.itemsize
        if min(shape, default=0) < 0 or not 0 <= start <= end <= len(body) or end - start != size:
            raise ValueError(f"tensor {name!r}: bytes {start}..{end} do not hold shape {shape} of {dtype}")
        array = np.frombuffer(body[start:end], dtype=dtype.newbyteorder("<")).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="))  # a native, writable copy
    return time_s, tensors


def _decode_json(data: bytes) -> tuple[float, dict[str, np.ndarray]]:
    body = json.loads(data)
    tensors = {}
    for name, item in body["tensors"].items():
        if item["dtype"] not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r}: unknown dtype {item['dtype']!r}")
        raw = base64.b64decode(item["data"], validate=True)
        array = np.frombuffer(raw, dtype=np.dtype(item["dtype"]).newbyteorder("<")).reshape(item["shape"])
        tensors[name] = array.astype(array.dtype.newbyteorder("="))
    return float(body["time_s"]), tensors
