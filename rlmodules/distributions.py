"""Action distributions built from a module's ``action_dist_inputs``.

Each class wraps a ``torch.distributions`` object so that env runners and learners can
sample, score and compare actions without knowing the action space. Turn a forward
pass's output into a distribution with ``action_dist_from_output`` (it also accepts the
torch.distributions objects that alpha-API and notebook-style modules return).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import distributions as td

from rlmodules.columns import Columns


class TorchDistribution:
    """Common interface: ``from_logits``, ``sample``, ``rsample``, ``logp``, ``entropy``, ``kl``.

    The defaults delegate to ``self.dist``, the wrapped ``torch.distributions`` object.
    """

    dist: td.Distribution

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "TorchDistribution":
        raise NotImplementedError

    @classmethod
    def required_input_dim(cls, space: gym.Space) -> int:
        """Size of the last dim of ``action_dist_inputs`` this class needs for ``space``."""
        raise NotImplementedError

    @classmethod
    def get_partial_dist_cls(cls, **kwargs) -> type["TorchDistribution"]:
        """A subclass whose ``from_logits`` has ``kwargs`` bound (e.g. ``input_lens``)."""
        name = f"{cls.__name__}Partial"
        return type(name, (cls,), {"from_logits": classmethod(
            lambda sub, logits, **kw: cls.from_logits(logits, **{**kwargs, **kw}))})

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def rsample(self) -> torch.Tensor:
        if not getattr(getattr(self, "dist", None), "has_rsample", False):
            raise NotImplementedError(f"{type(self).__name__} has no reparameterized sample.")
        return self.dist.rsample()

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(value)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy()

    def kl(self, other: "TorchDistribution") -> torch.Tensor:
        return td.kl_divergence(self.dist, other.dist)

    def to_deterministic(self) -> "TorchDeterministic":
        raise NotImplementedError


class TorchCategorical(TorchDistribution):
    """Categorical over ``n`` discrete actions, parameterized by logits."""

    def __init__(self, logits: torch.Tensor | None = None, probs: torch.Tensor | None = None):
        self.dist = td.Categorical(logits=logits, probs=probs, validate_args=False)
        self.logits = self.dist.logits
        self.probs = self.dist.probs

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "TorchCategorical":
        return cls(logits=logits)

    @classmethod
    def required_input_dim(cls, space: gym.Space) -> int:
        return int(space.n)

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(value.long())

    def to_deterministic(self) -> "TorchDeterministic":
        return TorchDeterministic(loc=torch.argmax(self.logits, dim=-1), event_ndims=0)


class TorchDiagGaussian(TorchDistribution):
    """Independent Gaussians per action dim; ``from_logits`` splits inputs into mean and log-std.

    ``logp``, ``entropy`` and ``kl`` sum over the action dims.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        self.dist = td.Independent(td.Normal(loc, scale, validate_args=False), 1)
        self.loc = loc
        self.scale = scale

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "TorchDiagGaussian":
        loc, log_std = logits.chunk(2, dim=-1)
        return cls(loc=loc, scale=log_std.exp())

    @classmethod
    def required_input_dim(cls, space: gym.Space) -> int:
        return 2 * int(np.prod(space.shape))

    def to_deterministic(self) -> "TorchDeterministic":
        return TorchDeterministic(loc=self.loc)


class TorchMultiCategorical(TorchDistribution):
    """Independent categoricals, one per MultiDiscrete component; inputs are concatenated logits."""

    def __init__(self, categoricals: Sequence[TorchCategorical]):
        self.cats = list(categoricals)

    @classmethod
    def from_logits(cls, logits: torch.Tensor, input_lens: Sequence[int] | None = None,
                    **kwargs) -> "TorchMultiCategorical":
        if input_lens is None:
            raise ValueError(
                "TorchMultiCategorical.from_logits needs `input_lens` (the nvec of the "
                "MultiDiscrete space); use TorchMultiCategorical.get_partial_dist_cls("
                "input_lens=list(space.nvec)).")
        if sum(input_lens) != logits.shape[-1]:
            raise ValueError(
                f"TorchMultiCategorical: input_lens {list(input_lens)} sum to {sum(input_lens)} "
                f"but the logits' last dim is {logits.shape[-1]}.")
        parts = torch.split(logits, list(input_lens), dim=-1)
        return cls([TorchCategorical(logits=p) for p in parts])

    @classmethod
    def required_input_dim(cls, space: gym.Space) -> int:
        return int(np.sum(space.nvec))

    def sample(self) -> torch.Tensor:
        return torch.stack([c.sample() for c in self.cats], dim=-1)

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        return sum(c.logp(v) for c, v in zip(self.cats, value.unbind(-1)))

    def entropy(self) -> torch.Tensor:
        return sum(c.entropy() for c in self.cats)

    def kl(self, other: "TorchMultiCategorical") -> torch.Tensor:
        return sum(c.kl(o) for c, o in zip(self.cats, other.cats))

    def to_deterministic(self) -> "TorchDeterministic":
        return TorchDeterministic(
            loc=torch.stack([torch.argmax(c.logits, dim=-1) for c in self.cats], dim=-1))


class TorchDeterministic(TorchDistribution):
    """A point mass at ``loc``: what greedy inference samples from.

    ``event_ndims`` is how many trailing dims of ``loc`` make up one action (0 for a
    discrete action, 1 for a vector action).
    """

    def __init__(self, loc: torch.Tensor, event_ndims: int = 1):
        self.loc = loc
        self.event_ndims = event_ndims

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "TorchDeterministic":
        return cls(loc=logits)

    @classmethod
    def required_input_dim(cls, space: gym.Space) -> int:
        return int(np.prod(space.shape))

    def sample(self) -> torch.Tensor:
        return self.loc

    def rsample(self) -> torch.Tensor:
        return self.loc

    def logp(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "TorchDeterministic has no density; compute logp from the stochastic "
            "distribution before calling to_deterministic().")

    def entropy(self) -> torch.Tensor:
        return torch.zeros(self.loc.shape[:self.loc.dim() - self.event_ndims])

    def kl(self, other: TorchDistribution) -> torch.Tensor:
        raise NotImplementedError("TorchDeterministic has no KL divergence.")

    def to_deterministic(self) -> "TorchDeterministic":
        return self


class TorchDistributionWrapper(TorchDistribution):
    """Any ``torch.distributions`` object behind the common interface.

    Alpha-API and notebook-style modules return such objects instead of inputs;
    ``logp`` and ``entropy`` are what the wrapped distribution says (no summing).
    """

    def __init__(self, dist: td.Distribution):
        self.dist = dist

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self.dist.mode, event_ndims=len(self.dist.event_shape))


def action_dist_from_output(out: Mapping[str, Any],
                            dist_cls: type[TorchDistribution]) -> TorchDistribution | None:
    """The action distribution of a forward output, or None if it returned only actions.

    Reads ``action_dist_inputs`` (or the alpha API's ``action_dist``); a torch.distributions
    object there is wrapped, plain inputs go through ``dist_cls.from_logits``.
    """
    inputs = out.get(Columns.ACTION_DIST_INPUTS)
    if inputs is None:
        inputs = out.get(Columns.ACTION_DIST)
    if inputs is None or isinstance(inputs, TorchDistribution):
        return inputs
    if isinstance(inputs, td.Distribution):
        return TorchDistributionWrapper(inputs)
    return dist_cls.from_logits(inputs)


def default_dist_cls(action_space: gym.Space) -> type[TorchDistribution]:
    """The distribution class an action space gets unless a module overrides it."""
    if isinstance(action_space, gym.spaces.Discrete):
        return TorchCategorical
    if isinstance(action_space, gym.spaces.Box):
        return TorchDiagGaussian
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return TorchMultiCategorical.get_partial_dist_cls(
            input_lens=[int(n) for n in action_space.nvec.ravel()])
    raise ValueError(
        f"No default action distribution for action space {action_space!r}: override "
        "get_{inference,exploration,train}_action_dist_cls() in your RLModule.")
