"""GGML's block quantisations, dequantised with numpy as llama.cpp's ``gguf-py`` (``gguf/quants.py``) does.

Each function takes ``n`` blocks as a ``(n, type_size)`` uint8 array and returns
their ``(n, block_size)`` float32 values. Scales are float16 (Q8_K: float32)
stored little-endian at the places ``ggml-common.h`` gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

QK_K = 256


def _f16(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray, groups: int) -> np.ndarray:
    """Low nibbles of each run of bytes first, then the high ones (``>> [0, 4]``)."""
    import numpy as np

    n = qs.shape[0]
    out = qs.reshape(n, groups, 1, -1) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    return (out & np.uint8(0x0F)).reshape(n, -1)


def _bits(q: np.ndarray, shifts: list[int], width: int, mask: int) -> np.ndarray:
    import numpy as np

    n = q.shape[0]
    out = q.reshape(n, -1, 1, width) >> np.array(shifts, np.uint8).reshape(1, 1, len(shifts), 1)
    return out & np.uint8(mask)


def q4_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    d = _f16(b[:, :2])
    return d * (_nibbles(b[:, 2:], 1).astype(np.int8) - np.int8(8)).astype(np.float32)


def q4_1(b: np.ndarray) -> np.ndarray:
    import numpy as np

    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    return d * _nibbles(b[:, 4:], 1).astype(np.float32) + m


def _high_bits(qh: np.ndarray) -> np.ndarray:
    import numpy as np

    words = np.ascontiguousarray(qh).view("<u4").reshape(-1, 1)
    return ((words >> np.arange(32, dtype=np.uint32).reshape(1, 32)) & np.uint32(1)).astype(np.uint8)


def q5_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    d = _f16(b[:, :2])
    q = _nibbles(b[:, 6:], 1) | (_high_bits(b[:, 2:6]) << np.uint8(4))
    return d * (q.astype(np.int8) - np.int8(16)).astype(np.float32)


def q5_1(b: np.ndarray) -> np.ndarray:
    import numpy as np

    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 8:], 1) | (_high_bits(b[:, 4:8]) << np.uint8(4))
    return d * q.astype(np.float32) + m


def q8_0(b: np.ndarray) -> np.ndarray:
    import numpy as np

    return _f16(b[:, :2]) * np.ascontiguousarray(b[:, 2:]).view(np.int8).astype(np.float32)


def q8_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    d = np.ascontiguousarray(b[:, :4]).view("<f4").astype(np.float32)
    return d * np.ascontiguousarray(b[:, 4 : 4 + QK_K]).view(np.int8).astype(np.float32)


def q2_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    scales, qs = b[:, : QK_K // 16], b[:, QK_K // 16 : QK_K // 16 + QK_K // 4]
    d, dmin = _f16(b[:, -4:-2]), _f16(b[:, -2:])
    dl = (d * (scales & 0xF).astype(np.float32)).reshape(n, QK_K // 16, 1)
    ml = (dmin * (scales >> 4).astype(np.float32)).reshape(n, QK_K // 16, 1)
    q = _bits(qs, [0, 2, 4, 6], 32, 3).reshape(n, QK_K // 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def q3_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    hmask, qs = b[:, : QK_K // 8], b[:, QK_K // 8 : QK_K // 8 + QK_K // 4]
    scales, d = b[:, QK_K // 8 + QK_K // 4 : -2], _f16(b[:, -2:])
    low = (scales[:, :8].reshape(n, 1, 8) >> np.array([0, 4], np.uint8).reshape(1, 2, 1)).reshape(n, 16)
    high = (scales[:, 8:].reshape(n, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)).reshape(
        n, 16
    )
    sc = ((low & np.uint8(0x0F)) | ((high & np.uint8(0x03)) << np.uint8(4))).astype(np.int8) - np.int8(32)
    dl = (d * sc.astype(np.float32)).reshape(n, 16, 1)
    ql = _bits(qs, [0, 2, 4, 6], 32, 3).reshape(n, 16, QK_K // 16)
    qh = _bits(hmask, list(range(8)), 32, 1).reshape(n, 16, QK_K // 16) ^ np.uint8(1)
    q = (ql.astype(np.int8) - (qh << np.uint8(2)).astype(np.int8)).astype(np.float32)
    return (dl * q).reshape(n, QK_K)


def _scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eight 6-bit scales and mins of a Q4_K/Q5_K block."""
    import numpy as np

    n = scales.shape[0]
    s = scales.reshape(n, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def q4_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _scale_min(np.ascontiguousarray(b[:, 4:16]))
    q = _bits(b[:, 16:], [0, 4], 32, 0x0F).reshape(n, -1, 32).astype(np.float32)
    return ((d * sc).reshape(n, -1, 1) * q - (dmin * mn).reshape(n, -1, 1)).reshape(n, QK_K)


def q5_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _scale_min(np.ascontiguousarray(b[:, 4:16]))
    qh, qs = b[:, 16 : 16 + QK_K // 8], b[:, 16 + QK_K // 8 :]
    ql = _bits(qs, [0, 4], 32, 0x0F).reshape(n, -1, 32)
    high = _bits(qh, list(range(8)), 32, 1).reshape(n, -1, 32)
    q = (ql | (high << np.uint8(4))).astype(np.float32)
    return ((d * sc).reshape(n, -1, 1) * q - (dmin * mn).reshape(n, -1, 1)).reshape(n, QK_K)


def q6_k(b: np.ndarray) -> np.ndarray:
    import numpy as np

    n = b.shape[0]
    ql, qh = b[:, : QK_K // 2], b[:, QK_K // 2 : QK_K // 2 + QK_K // 4]
    scales = np.ascontiguousarray(b[:, QK_K // 2 + QK_K // 4 : -2]).view(np.int8).astype(np.float32)
    d = (_f16(b[:, -2:]) * scales).reshape(n, QK_K // 16, 1)
    low = _bits(ql, [0, 4], 64, 0x0F).reshape(n, -1, 32)
    high = _bits(qh, [0, 2, 4, 6], 32, 0x03).reshape(n, -1, 32)
    q = ((low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)).reshape(n, QK_K // 16, -1)
    return (d * q.astype(np.float32)).reshape(n, QK_K)


# GGML type id -> (label, elements per block, bytes per block, dequantiser)
BLOCK_TYPES: dict[int, tuple[str, int, int, Callable[[np.ndarray], np.ndarray]]] = {
    2: ("q4_0", 32, 18, q4_0),
    3: ("q4_1", 32, 20, q4_1),
    6: ("q5_0", 32, 22, q5_0),
    7: ("q5_1", 32, 24, q5_1),
    8: ("q8_0", 32, 34, q8_0),
    10: ("q2_k", QK_K, 84, q2_k),
    11: ("q3_k", QK_K, 110, q3_k),
    12: ("q4_k", QK_K, 144, q4_k),
    13: ("q5_k", QK_K, 176, q5_k),
    14: ("q6_k", QK_K, 210, q6_k),
    15: ("q8_k", QK_K, 292, q8_k),
}
# GGML type id -> numpy dtype name of types stored one element at a time
PLAIN_TYPES = {
    0: "float32",
    1: "float16",
    24: "int8",
    25: "int16",
    26: "int32",
    27: "int64",
    28: "float64",
    30: "bfloat16",
}
# types GGUF defines that lakegen does not dequantise: (elements, bytes) per block, so offsets still check
OTHER_TYPES = {
    9: ("q8_1", 32, 40),
    16: ("iq2_xxs", QK_K, 66),
    17: ("iq2_xs", QK_K, 74),
    18: ("iq3_xxs", QK_K, 98),
    19: ("iq1_s", QK_K, 50),
    20: ("iq4_nl", 32, 18),
    21: ("iq3_s", QK_K, 110),
    22: ("iq2_s", QK_K, 82),
    23: ("iq4_xs", QK_K, 136),
    29: ("iq1_m", QK_K, 56),
    34: ("tq1_0", QK_K, 54),
    35: ("tq2_0", QK_K, 66),
    39: ("mxfp4", 32, 17),
}
