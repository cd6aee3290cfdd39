"""Nested dicts and tuples (and lists) of arrays: the one recursion every package shares.

Observations, actions, recurrent states, batches, weights and optimizer states are all such
trees (gymnasium batches Dict spaces as dicts and Tuple spaces as tuples); ``map_tree``
walks them leaf by leaf so that no module writes its own recursion.
"""

from __future__ import annotations

from typing import Any, Callable

Tree = Any  # A leaf, or a dict / tuple / list of trees.


def map_tree(fn: Callable[..., Any], first: Tree, *rest: Tree, sequences: bool = False) -> Tree:
    """``fn`` applied leaf by leaf to equally structured trees; dicts and tuples are always
    containers, lists only with ``sequences=True`` (else they are leaves, like arrays)."""
    if isinstance(first, dict):
        if not rest:  # The common case: a leaf's value without a recursive call.
            return {k: map_tree(fn, v, sequences=sequences) if isinstance(v, _CONTAINERS)
                    else fn(v) for k, v in first.items()}
        return {k: map_tree(fn, v, *(r[k] for r in rest), sequences=sequences)
                if isinstance(v, _CONTAINERS) else fn(v, *(r[k] for r in rest))
                for k, v in first.items()}
    if isinstance(first, tuple) or (sequences and isinstance(first, list)):
        return type(first)(map_tree(fn, *items, sequences=sequences)
                           for items in zip(first, *rest))
    return fn(first, *rest)


_CONTAINERS = (dict, tuple, list)  # Maybe containers: map_tree decides (lists by sequences).


def first_leaf(tree: Tree) -> Any:
    """The first leaf of a dict/tuple tree (e.g. to read a batch's length)."""
    while isinstance(tree, (dict, tuple)):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tree
