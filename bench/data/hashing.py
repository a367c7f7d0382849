"""Counter-based random numbers: the same (seed, item, view, component) always gives the same
value, whatever batch it is generated in. This is what lets the synthetic marketplace generate
view features lazily per batch and still be deterministic per seed, item and view."""

from __future__ import annotations

from typing import Any, overload

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@overload
def splitmix64(x: np.uint64) -> np.uint64: ...
@overload
def splitmix64(x: np.ndarray) -> np.ndarray: ...
def splitmix64(x: Any) -> Any:
    """The splitmix64 finaliser (Steele, Lea, Flood 2014), applied element-wise to uint64."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def keyed(seed: int, stream: int, *indices: np.ndarray | np.integer) -> np.ndarray:
    """A uint64 key per element of the broadcast of `indices`, for a given seed and stream id."""
    with np.errstate(over="ignore"):
        # a uint64 scalar until the first index array is mixed in, an array after
        key: Any = splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ (np.uint64(stream) * _GOLDEN))
        for idx in indices:
            key = splitmix64(key ^ np.asarray(idx, dtype=np.uint64))
        return key


def uniform(key: np.ndarray) -> np.ndarray:
    """Uniform floats in (0, 1) from uint64 keys (53 random bits)."""
    bits = splitmix64(key) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(key: np.ndarray) -> np.ndarray:
    """Standard normal float32 from uint64 keys (Box-Muller on two derived uniforms)."""
    with np.errstate(over="ignore"):
        u1 = uniform(key)
        u2 = uniform(key ^ np.uint64(0xD1B54A32D192ED03))
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
