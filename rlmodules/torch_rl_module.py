"""TorchRLModule: an RLModule that is also a ``torch.nn.Module``."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from rlmodules.apis import InferenceOnlyAPI, TargetNetworkAPI
from rlmodules.rl_module import RLModule
from rlmodules.tree import map_tree


class TorchRLModule(nn.Module, RLModule):
    """Subclass this for custom torch modules; ``forward()`` is ``forward_train()``."""

    framework = "torch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        nn.Module.__init__(self)
        RLModule.__init__(self, *args, **kwargs)

    def forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self.forward_train(batch, **kwargs)

    def _to_tensors(self, batch: Any) -> Any:
        return to_tensors(batch)

    def get_state(self, inference_only: bool = False) -> dict[str, np.ndarray]:
        """Weights as numpy copies, keyed like ``state_dict()``; cheap to ship to actors.

        ``inference_only=True`` leaves out what an InferenceOnlyAPI module names in
        ``get_non_inference_attributes()``.
        """
        skip = tuple(f"{attr}." for attr in self.get_non_inference_attributes()) \
            if inference_only and isinstance(self, InferenceOnlyAPI) else ()
        return {k: v.detach().cpu().numpy().copy() for k, v in self.state_dict().items()
                if not k.startswith(skip)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` (numpy arrays or tensors) into this module's tensors in place.

        Every parameter must be in ``state`` with its shape. Extra entries are refused,
        except (as RLlib loads with ``strict=False``) by an inference-only module, which
        takes the full module's state, and by a TargetNetworkAPI module, whose target nets
        exist only after its learner made them.
        """
        own = self.state_dict()
        name = type(self).__name__
        missing = [k for k in own if k not in state]
        if missing:
            raise KeyError(
                f"{name}.set_state(): the state lacks {len(missing)} parameter(s) of this module, "
                f"e.g. {missing[:3]}. Was it saved from a different module class or config?")
        if not (self.inference_only or isinstance(self, TargetNetworkAPI)):
            unexpected = [k for k in state if k not in own]
            if unexpected:
                raise KeyError(
                    f"{name}.set_state(): the state has parameter(s) this module does not, e.g. "
                    f"{unexpected[:3]}. Was it saved from a different module class or config?")
        for key, tensor in own.items():  # Check all before copying any.
            if tuple(state[key].shape) != tuple(tensor.shape):
                raise ValueError(
                    f"{name}.set_state(): parameter '{key}' has shape {tuple(tensor.shape)} in "
                    f"the module but {tuple(state[key].shape)} in the state. Build the module "
                    "with the model_config the state was saved with.")
        with torch.no_grad():
            for key, tensor in own.items():
                value = state[key]
                if isinstance(value, np.ndarray) and tensor.device.type == "cpu":
                    # Straight into the tensor's memory: no temporary tensor, and no torch
                    # warning for the read-only arrays that come out of Ray's object store.
                    np.copyto(tensor.numpy(), value, casting="same_kind")
                else:
                    tensor.copy_(torch.as_tensor(value))


def to_tensors(batch: Any) -> Any:
    """numpy arrays (also inside dicts) to torch tensors, float64 as float32; the rest as is."""
    def leaf(x: Any) -> Any:
        if not isinstance(x, np.ndarray):
            return x
        return torch.from_numpy(x.astype(np.float32) if x.dtype == np.float64 else x)
    return map_tree(leaf, batch)
