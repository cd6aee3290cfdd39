"""From fragments to train batches: concatenation, sequence cutting, minibatch plans.

``TorchLearner.build_module_batch`` chains the numpy steps for one module and moves the
result to its device once per update; ``iterate_minibatches`` then cuts that batch.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from rlmodules.columns import Columns
from rlmodules.tree import first_leaf, map_tree
from runners.fragment import Fragment

Nested = Any  # an np.ndarray or a dict of them (possibly nested)


def group_by_module(fragments: Sequence[Fragment]) -> dict[str, list[Fragment]]:
    """Fragments per module ID, each list in the order the fragments came."""
    groups: dict[str, list[Fragment]] = {}
    for fragment in fragments:
        groups.setdefault(fragment.module_id, []).append(fragment)
    return groups


def concat_fragments(fragments: Sequence[Fragment],
                     extra_columns: dict[str, Sequence[np.ndarray]] | None = None
                     ) -> dict[str, Nested]:
    """All numeric columns of ``fragments`` concatenated along time: ``{name: [N, ...]}``.

    ``extra_columns`` maps a column name to one array per fragment (same order, length T
    each). Non-numeric columns (e.g. infos) stay out: they cannot become tensors.
    """
    if not fragments:
        raise ValueError("concat_fragments() got no fragments.")
    names = [k for k, v in fragments[0].columns.items()
             if isinstance(leaf := first_leaf(v), np.ndarray) and leaf.dtype.kind in "biuf"]
    out = {}
    for name in names:
        for i, fragment in enumerate(fragments):
            if name not in fragment.columns:
                raise KeyError(
                    f"Fragment {i} (module '{fragment.module_id}', episode "
                    f"{fragment.episode_id}) lacks column '{name}' that fragment 0 has; all "
                    "fragments of one module must carry the same columns.")
        out[name] = map_tree(lambda *xs: np.concatenate(xs), *[f.columns[name] for f in fragments])
    for name, arrays in (extra_columns or {}).items():
        if len(arrays) != len(fragments):
            raise ValueError(f"Extra column '{name}' has {len(arrays)} arrays but there are "
                             f"{len(fragments)} fragments; pass one array per fragment.")
        for i, (array, fragment) in enumerate(zip(arrays, fragments)):
            if len(array) != len(fragment):
                raise ValueError(
                    f"Extra column '{name}': the array for fragment {i} has length "
                    f"{len(array)} but the fragment has {len(fragment)} timesteps.")
        out[name] = np.concatenate(arrays)
    return out


def cut_sequences(columns: dict[str, Nested], lengths: Sequence[int],
                  max_seq_len: int) -> dict[str, Nested]:
    """Flat columns of consecutive fragments -> zero-padded ``[B, max_seq_len, ...]`` sequences.

    ``lengths`` are the fragments' lengths (summing to the columns' first dim). A fragment
    of length T becomes ceil(T / max_seq_len) sequences. ``STATE_IN`` (per step, flat) is
    replaced by its value at each sequence start ({k: [B, ...]}); ``LOSS_MASK`` marks the
    real (non-padded) steps.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths <= 0).any():
        raise ValueError(f"cut_sequences(): fragment lengths must be positive, got {lengths}.")
    seqs_per_fragment = -(-lengths // max_seq_len)
    num_seqs = int(seqs_per_fragment.sum())
    # Position of every flat step inside its fragment, then its (row, col) in the output.
    fragment_starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    t_in_fragment = np.arange(int(lengths.sum())) - fragment_starts
    first_row = np.repeat(np.cumsum(seqs_per_fragment) - seqs_per_fragment, lengths)
    rows = first_row + t_in_fragment // max_seq_len
    cols = t_in_fragment % max_seq_len
    starts = np.flatnonzero(cols == 0)

    def pad(flat: np.ndarray) -> np.ndarray:
        out = np.zeros((num_seqs, max_seq_len) + flat.shape[1:], dtype=flat.dtype)
        out[rows, cols] = flat
        return out

    out = {name: (map_tree(lambda x: x[starts], value) if name == Columns.STATE_IN
                  else map_tree(pad, value))
           for name, value in columns.items()}
    mask = np.zeros((num_seqs, max_seq_len), dtype=bool)
    mask[rows, cols] = True
    out[Columns.LOSS_MASK] = mask
    return out


def minibatch_plan(num_rows: int, minibatch_rows: int | None, num_minibatches: int,
                   rng: np.random.Generator) -> np.ndarray | None:
    """Row indices [num_minibatches, minibatch_rows] for an update, or None for full batches.

    Indices come from back-to-back random permutations of all rows, so every row is used
    about equally often even when ``num_minibatches * minibatch_rows`` is not a multiple of
    ``num_rows`` (data-parallel learners cycle over their local data this way).
    """
    if minibatch_rows is None or minibatch_rows >= num_rows:
        return None
    needed = num_minibatches * minibatch_rows
    perms = [rng.permutation(num_rows) for _ in range(-(-needed // num_rows))]
    return np.concatenate(perms)[:needed].reshape(num_minibatches, minibatch_rows)


def iterate_minibatches(batch: Nested, plan: Any, num_steps: int) -> Iterator[Nested]:
    """Each step's minibatch of ``batch`` (a nested dict of arrays or tensors) for a
    ``minibatch_plan`` (as an index array or tensor); all of ``batch`` at every step when
    ``plan`` is None.

    The rows of about one pass over the data are gathered with one indexing per column and
    the minibatches are slices (views) of that, instead of one gather per column per
    minibatch: the same rows in the same order, a fraction of the indexing calls, and at
    most one batch's worth of extra memory.
    """
    if plan is None:
        for _ in range(num_steps):
            yield batch
        return
    rows = plan.shape[1]
    steps_per_gather = max(1, len(first_leaf(batch)) // rows)
    for start in range(0, num_steps, steps_per_gather):
        index = plan[start:start + steps_per_gather].reshape(-1)
        gathered = map_tree(lambda x: x[index], batch)
        for offset in range(0, len(index), rows):
            yield map_tree(lambda x: x[offset:offset + rows], gathered)
