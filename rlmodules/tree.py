"""Nested dicts (and lists/tuples) of arrays: the one recursion every package shares.

Observations, recurrent states, batches, weights and optimizer states are all such trees;
``map_tree`` walks them leaf by leaf so that no module writes its own recursion.
"""

from __future__ import annotations

from typing import Any, Callable

Tree = Any  # A leaf, or a dict / list / tuple of trees.


def map_tree(fn: Callable[..., Any], first: Tree, *rest: Tree, sequences: bool = False) -> Tree:
    """``fn`` applied leaf by leaf to equally structured trees; dicts are always containers,
    lists and tuples only with ``sequences=True`` (else they are leaves, like arrays)."""
    if isinstance(first, dict):
        return {k: map_tree(fn, v, *(r[k] for r in rest), sequences=sequences)
                for k, v in first.items()}
    if sequences and isinstance(first, (list, tuple)):
        return type(first)(map_tree(fn, *items, sequences=True)
                           for items in zip(first, *rest))
    return fn(first, *rest)


def first_leaf(tree: Tree) -> Any:
    """The first leaf of a dict tree (e.g. to read a batch's length)."""
    while isinstance(tree, dict):
        tree = next(iter(tree.values()))
    return tree
