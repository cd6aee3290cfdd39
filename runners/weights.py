"""Weight-sync digests: a runner proves it holds exactly the weights it was sent.

The driver digests the learner's weights once per sync; each runner digests its module's
tensors after loading them. A mismatch (a wrong key, shape, dtype or value) is an error
naming the runner and the module instead of silently acting with other weights.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping

import numpy as np
import torch

Weights = Mapping[str, Mapping[str, Any]]  # {module_id: {param: array or tensor}}


def weights_digest(weights: Weights) -> dict[str, str]:
    """``{module_id: checksum}`` over each parameter's name, shape, dtype and bytes."""
    out = {}
    for module_id, params in weights.items():
        crc = 0
        for name in sorted(params):
            value = params[name]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            array = np.ascontiguousarray(array)
            crc = zlib.crc32(f"{name}{array.shape}{array.dtype}".encode(), crc)
            crc = zlib.crc32(array.reshape(-1).view(np.uint8), crc)
        out[module_id] = f"{crc:08x}"
    return out


def verify_loaded(module: Any, sent: Weights, digest: Mapping[str, str], who: str) -> None:
    """Raise if ``module`` (a MultiRLModule) does not hold ``sent``'s parameters as digested."""
    for module_id, expected in digest.items():
        own = module[module_id].state_dict()
        held = weights_digest({module_id: {k: own[k] for k in sent[module_id] if k in own}})
        if held[module_id] != expected:
            raise RuntimeError(
                f"{who}: module '{module_id}' holds weights with digest {held[module_id]} "
                f"after a sync, but {expected} was sent; its parameters differ from the "
                "learner's (names, shapes, dtypes or values). Check that the runner's module "
                "is built from the same spec as the learner's.")
