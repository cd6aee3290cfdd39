"""Weight-sync digests: a runner proves it holds the weights it was sent.

The driver digests the learner's weights once per sync; each runner digests its module's
tensors after loading them. A mismatch (a wrong or missing key, shape, dtype or values) is
an error naming the runner and the module instead of silently acting with other weights.

A digest covers every parameter's name, shape and dtype, and its values at up to
``SAMPLES_PER_PARAM`` positions spread over the whole tensor (all of them for small tensors):
hashing every byte would cost as much as the sync itself (the copy into the module), while
weights that were not loaded, loaded into the wrong parameter or cast differ almost
everywhere. What it cannot see is a corruption of single values between the sampled ones.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Mapping

import numpy as np
import torch

Weights = Mapping[str, Mapping[str, Any]]  # {module_id: {param: array or tensor}}

SAMPLES_PER_PARAM = 1024


@functools.lru_cache(maxsize=None)
def _positions(size: int) -> np.ndarray:
    """The flat indices sampled from a tensor of ``size`` values: the same on driver and
    runners, random so that they fall on every row and column of a matrix."""
    return np.random.default_rng(size).integers(0, size, SAMPLES_PER_PARAM)


def _sampled(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    return np.ascontiguousarray(flat if flat.size <= SAMPLES_PER_PARAM
                                else flat[_positions(flat.size)])


def weights_digest(weights: Weights) -> dict[str, str]:
    """``{module_id: checksum}`` over each parameter's name, shape, dtype and sampled values."""
    out = {}
    for module_id, params in weights.items():
        crc = 0
        for name in sorted(params):
            value = params[name]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else \
                np.asarray(value)
            crc = zlib.crc32(f"{name}{array.shape}{array.dtype}".encode(), crc)
            crc = zlib.crc32(_sampled(array).view(np.uint8), crc)
        out[module_id] = f"{crc:08x}"
    return out


def held_digest(module: Any, sent: Weights) -> dict[str, str]:
    """The digest of what ``module`` (a MultiRLModule) holds of ``sent``'s parameters."""
    held = {}
    for module_id, params in sent.items():
        own = module[module_id].state_dict()
        held.update(weights_digest({module_id: {k: own[k] for k in params if k in own}}))
    return held


def verify_loaded(module: Any, sent: Weights, digest: Mapping[str, str], who: str) -> None:
    """Raise if ``module`` (a MultiRLModule) does not hold ``sent``'s parameters as digested."""
    held = held_digest(module, {module_id: sent[module_id] for module_id in digest})
    for module_id, expected in digest.items():
        if held[module_id] != expected:
            raise RuntimeError(
                f"{who}: module '{module_id}' holds weights with digest {held[module_id]} "
                f"after a sync, but {expected} was sent; its parameters differ from the "
                "learner's (names, shapes, dtypes or values). Check that the runner's module "
                "is built from the same spec as the learner's.")
