"""Building and stepping torch optimizers without importing ``torch._dynamo``.

torch 2.13 imports torch._dynamo (about 1.5 s, more than ``import torch`` itself) the first
time any optimizer is built or stepped, even when nothing is compiled:
``Optimizer.add_param_group`` (and ``zero_grad``, ``state_dict``, ``load_state_dict``) sit
in a lazy ``torch._disable_dynamo`` wrapper, and every ``step()`` in
``_use_grad_for_differentiable``, which imports it to mark a graph break. Outside
torch.compile both only call the function (``step`` with grad disabled). So, while
torch._dynamo is not loaded, ``skip_dynamo_import()`` has those wrappers call straight
through, and ``step()`` calls the optimizer's own step under ``torch.no_grad()``. Once
something else has loaded torch._dynamo, or where step hooks or a patched ``step`` are in
play, torch's own path is taken.
"""

from __future__ import annotations

import sys

import torch
from torch.optim import optimizer as torch_optimizer

_DISABLE_DYNAMO_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def skip_dynamo_import() -> None:
    """Give the wrapped Optimizer methods themselves as their dynamo-disabled version (what
    the wrapper computes and caches on first use), so the wrapper needs no torch._dynamo."""
    if _dynamo_loaded():
        return
    for name in _DISABLE_DYNAMO_WRAPPED:
        fn = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)


def step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``; without importing torch._dynamo where that is the same."""
    patched = vars(optimizer).get("step")  # LR schedulers wrap it to track the call.
    if (_dynamo_loaded() or optimizer.defaults.get("differentiable")
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
            or torch_optimizer._global_optimizer_pre_hooks
            or torch_optimizer._global_optimizer_post_hooks
            or (patched is not None and not hasattr(patched, "_wrapped_by_lr_sched"))):
        optimizer.step()
        return
    fn = type(optimizer).step
    while hasattr(fn, "__wrapped__"):  # Past the profiling and grad-mode wrappers.
        fn = fn.__wrapped__
    with torch.no_grad():
        fn(optimizer)
    optimizer._opt_called = True  # What the LR scheduler's wrapper records.
