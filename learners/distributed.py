"""Data-parallel plumbing: the learners' torch.distributed process group, gradient and
metrics averaging.

Each data-parallel learner is a Ray actor. Rank 0 picks a rendezvous address, every rank
joins the process group, rank 0's initial weights are broadcast, after every backward pass
the gradients are averaged with one all-reduce, so all learners take identical steps, and
each update's metrics are reduced to the same numbers on every learner.
"""

from __future__ import annotations

import datetime
import socket
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn


def select_backend(num_gpus_per_learner: float) -> str:
    """nccl when every learner owns a whole GPU; gloo otherwise (CPU, or GPUs shared by
    several learners, which nccl refuses to put into one communicator)."""
    return "nccl" if num_gpus_per_learner >= 1 else "gloo"


def rendezvous_address() -> tuple[str, int]:
    """This node's IP and a free TCP port: where rank 0 hosts the process-group store."""
    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def init_process_group(backend: str, address: tuple[str, int], rank: int, world_size: int,
                       timeout_s: float) -> None:
    """Join the learners' process group; collectives fail after ``timeout_s`` (e.g. a dead
    peer) instead of hanging."""
    host, port = address
    dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=rank,
                            world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def broadcast_module(module: nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def all_reduce_gradients(params: Sequence[torch.Tensor]) -> None:
    """Average gradients over the ranks that have them, in one all-reduce.

    Every rank sends the same layout: each parameter's gradient (zeros where it has none)
    plus one "has a gradient" flag per parameter. A parameter's summed gradient is divided
    by the number of ranks that contributed; a parameter no rank touched keeps grad None,
    so optimizers skip it everywhere alike.
    """
    grads = [p.grad for p in params]
    device = params[0].device
    flags = torch.tensor([g is not None for g in grads], dtype=torch.float32, device=device)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for p, g in zip(params, grads)] + [flags])
    dist.all_reduce(flat)
    contributors = flat[-len(params):].tolist()
    offset = 0
    for param, count in zip(params, contributors):
        n = param.numel()
        param.grad = (flat[offset:offset + n].view_as(param).div_(count) if count else None)
        offset += n


Metrics = Mapping[str, Any]  # Nested dicts of numbers (or lists, for reduce=None).


def all_reduce_metrics(results: Metrics) -> dict[str, Any]:
    """Every rank's update metrics -> ``reduce_metrics`` of all of them, on every rank.

    One all_gather of the (small) dicts: ranks may report different modules and names, and
    each rank reduces the same list in the same order, so all get bit-identical numbers.
    """
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    return reduce_metrics(gathered)


def reduce_metrics(results: Sequence[Metrics]) -> dict[str, Any]:
    """Per-learner (nested) metrics -> one dict: ints (counts) summed, other numbers
    averaged over the learners that reported them, lists concatenated."""
    merged: dict[str, list[Any]] = {}
    for result in results:
        for key, value in result.items():
            merged.setdefault(key, []).append(value)
    return {key: _reduce(values) for key, values in merged.items()}


def _reduce(values: list[Any]) -> Any:
    if all(isinstance(v, Mapping) for v in values):
        return reduce_metrics(values)
    if all(isinstance(v, list) for v in values):
        return [x for v in values for x in v]
    if all(isinstance(v, int) for v in values):
        return sum(values)
    return sum(values) / len(values)
