"""Algorithm checkpoints: one directory per component, so every sub-directory is a checkpoint
of that component and ``restore_from_path(sub_dir, component=...)`` can load it alone.

Layout of ``Algorithm.save_to_path(path)``::

    path/metadata.json                                algorithm and config classes, the config
                                                      as JSON; written last (marks completeness)
    path/counters/state.json                          training iteration, weights seq no
    path/metrics_logger/state.json                    what was logged to ``algo.metrics``
    path/env_runner/state.json (+ arrays.safetensors) connector states and runner counters
    path/learner_group/learner/rl_module/<module_id>/ an RLModule checkpoint per module
    path/learner_group/learner/optimizer/state.json (+ arrays.safetensors), and any other
                                                      learner state (e.g. PPO's kl_coeffs)

Saves are atomic (``rlmodules.checkpoint.write_dir_atomically``): a save killed at any moment
leaves a complete checkpoint (``find_checkpoint``), and the next save clears what it left.

Arrays go to safetensors, everything else to JSON (``rlmodules.checkpoint.to_json``); no code
is pickled. Classes and functions in the config are stored by name and loaded only where they
fit their slot (``rlmodules.checkpoint.SLOTS``); lambdas, local functions and callables that fit
no slot need the config (or ``trusted=[...]``) passed to ``from_checkpoint``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from rlmodules.checkpoint import (METADATA_FILE, SLOTS, WEIGHTS_FILE, CheckpointError, Slot,
                                  class_path, from_json, load_state_tensors, read_metadata,
                                  resolve, save_module, save_state_tensors, to_json,
                                  write_dir_atomically, write_metadata)
from learners.learner import select_components
from rlmodules.apis import TargetNetworkAPI
from runners.callbacks import HOOKS
from runners.config import default_policy_mapping_fn
from runners.env_registry import registered_creators

if TYPE_CHECKING:
    from algorithms.algorithm import Algorithm
    from algorithms.algorithm_config import AlgorithmConfig

COMPONENTS = ("learner_group", "env_runner", "counters", "metrics_logger")
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.safetensors"
_MODULES = "learner_group/learner/rl_module"
# Component paths written as directories of sub-components (the rest are leaf files).
_BRANCHES = {"learner_group", "learner_group/learner", _MODULES}

_ALGORITHM = Slot("an Algorithm subclass", ("algorithms.algorithm:Algorithm",))
_NO_CODE = Slot("given by you, not by a checkpoint (it fits no safe slot)")
SLOTS.update({  # What the names in an algorithm checkpoint's config may stand for.
    "algorithm_class": _ALGORITHM,
    "algo_class": _ALGORITHM,
    "config_class": Slot("an AlgorithmConfig subclass",
                         ("algorithms.algorithm_config:AlgorithmConfig",)),
    "learner_class": Slot("a Learner subclass", ("learners.learner:Learner",)),
    "env": Slot("a gymnasium.Env subclass or a creator registered with runners.register_env",
                ("gymnasium:Env",), registered_creators),
    "policy_mapping_fn": Slot("runners.config.default_policy_mapping_fn",
                              values=lambda: [default_policy_mapping_fn]),
    "policies_to_train": _NO_CODE,
    "env_to_module_connector": _NO_CODE,
    "module_to_env_connector": _NO_CODE,
    "learner_connector": _NO_CODE,
    "callbacks_class": Slot("an RLlibCallback subclass (or a list of them)",
                            ("runners.callbacks:RLlibCallback",)),
    **dict.fromkeys(HOOKS, _NO_CODE),  # callbacks_hooks: {hook: function or functions}.
    "_torch_lr_scheduler_classes": Slot("a torch lr scheduler class",
                                        ("torch.optim.lr_scheduler:LRScheduler",)),
})


# ---- component paths ----------------------------------------------------------------------

def select_algorithm_components(components: str | Sequence[str] | None
                                ) -> dict[str, list[str] | None]:
    """Paths like "learner_group/learner/rl_module/p0" -> {"learner_group": ["learner/..."]}."""
    return select_components(components, dict.fromkeys(COMPONENTS), f"{_MODULES}/default_policy")


def check_component(component: str, module_ids: Sequence[str]) -> None:
    """Fail early (before touching any actor) on a path that names nothing."""
    parts = component.strip("/").split("/")
    select_algorithm_components(component)
    if parts[0] == "learner_group" and len(parts) > 1 and parts[1] != "learner":
        raise KeyError(f"Unknown component '{component}': below 'learner_group' comes "
                       "'learner', e.g. 'learner_group/learner/rl_module/default_policy'.")
    if parts[:3] == _MODULES.split("/") and len(parts) > 3 and parts[3] not in module_ids:
        raise KeyError(f"Unknown component '{component}': there is no module '{parts[3]}'; "
                       f"the algorithm's modules are {list(module_ids)}.")


# ---- writing ------------------------------------------------------------------------------

def save_algorithm(algo: "Algorithm", path: str) -> str:
    """Write ``algo``'s whole state and config to the directory ``path`` (atomically)."""
    state = algo.get_state()
    meta = {"kind": "algorithm", "algorithm_class": class_path(type(algo)),
            "config_class": class_path(type(algo.config)),
            "config": config_to_json(algo.config)}

    def write(tmp: Path) -> None:
        _write_components(tmp, state, "", algo)
        write_metadata(tmp, meta)

    written = write_dir_atomically(path, write)
    for leftover in _leftovers(written):  # Of earlier saves that were killed.
        shutil.rmtree(leftover, ignore_errors=True)
    return str(written)


def _leftovers(path: Path) -> list[Path]:
    """What killed saves to ``path`` left next to it: temp copies and swapped-out backups."""
    return [p for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*")
            for p in path.parent.glob(pattern) if p.is_dir()]


def find_checkpoint(path: str | Path) -> Path:
    """``path``, or if a save was killed between its two renames, the complete copy it left.

    write_dir_atomically fsyncs the new copy (metadata last) before moving the old one away, so
    with ``path`` gone the newest complete temp copy is the checkpoint that was being saved.
    """
    path = Path(path).absolute()
    if path.exists():
        return path
    complete = [p for p in _leftovers(path) if (p / METADATA_FILE).is_file()]
    newest_first = sorted(complete, key=lambda p: (p.name.startswith(f".{path.name}.tmp-"),
                                                   (p / METADATA_FILE).stat().st_mtime),
                          reverse=True)
    return newest_first[0] if newest_first else path


def _write_components(directory: Path, state: Mapping[str, Any], prefix: str,
                      algo: "Algorithm") -> None:
    for key, value in state.items():
        component = f"{prefix}/{key}" if prefix else key
        if prefix == _MODULES:  # Each module as an RLModule checkpoint of its own.
            module = algo.module_spec.rl_module_specs[key].build()
            if isinstance(module, TargetNetworkAPI):  # The learner's state holds its targets.
                module.make_target_networks()
            module.set_state(value)
            save_module(module, directory / key)
        elif component in _BRANCHES:
            (directory / key).mkdir()
            _write_components(directory / key, value, component, algo)
        else:
            (directory / key).mkdir()
            write_state_file(directory / key, value)


def write_state_file(directory: Path, tree: Any) -> None:
    """A nested state as state.json, with every array moved to arrays.safetensors."""
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps(to_json(tree, "state", arrays), indent=1)
    if arrays:
        save_state_tensors(directory / ARRAYS_FILE, arrays)
    (directory / STATE_FILE).write_text(text)


# ---- reading ------------------------------------------------------------------------------

def read_component(path: str, component: str | None = None) -> dict[str, Any]:
    """The state stored at ``path``, nested under ``component`` ("a/b" -> {"a": {"b": ...}}).

    Without ``component``, ``path`` must be a whole algorithm checkpoint.
    """
    directory = find_checkpoint(path) if component is None else Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist or is not a directory.")
    if component is None:
        read_algorithm_metadata(directory)
    state = read_state_dir(directory)
    for part in reversed(component.strip("/").split("/") if component else []):
        state = {part: state}
    return state


def read_algorithm_metadata(directory: str | Path) -> dict[str, Any]:
    """The metadata of the algorithm checkpoint in ``directory`` (any other kind raises)."""
    meta = read_metadata(directory)
    if meta.get("kind") != "algorithm":
        raise CheckpointError(
            f"'{directory}' is not an algorithm checkpoint (it holds a {meta.get('kind')}). "
            "To load part of one (e.g. a module checkpoint), pass component='learner_group/"
            "learner/rl_module/<id>' to restore_from_path, or use RLModule.from_checkpoint.")
    return meta


def read_state_dir(directory: Path) -> Any:
    """The nested state in ``directory``: a module checkpoint, a state file, or sub-dirs."""
    meta = read_metadata(directory) if (directory / METADATA_FILE).is_file() else {}
    if meta.get("kind") == "rl_module":
        return load_state_tensors(directory / WEIGHTS_FILE)
    if meta.get("kind") == "multi_rl_module":
        return {mid: read_state_dir(directory / mid) for mid in meta["module_ids"]}
    if (directory / STATE_FILE).is_file():
        return read_state_file(directory)
    subdirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise CheckpointError(f"'{directory}' holds no checkpoint: no module checkpoint, no "
                              f"{STATE_FILE} and no component sub-directories.")
    return {p.name: read_state_dir(p) for p in subdirs}


def read_state_file(directory: Path) -> Any:
    """Inverse of ``write_state_file``."""
    try:
        tree = json.loads((directory / STATE_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"'{directory / STATE_FILE}' is corrupt ({err}).") from err
    arrays = load_state_tensors(directory / ARRAYS_FILE) if (
        directory / ARRAYS_FILE).is_file() else {}
    return from_json(tree, directory / STATE_FILE, "state", arrays=arrays)


def load_algorithm(path: str, config: "AlgorithmConfig | None" = None,
                   trusted: Sequence[Any] = ()) -> "Algorithm":
    """Build the algorithm recorded at ``path`` (with ``config`` if given) and load its state.

    The algorithm and config classes, and every name in the config, must fit their slots
    (``rlmodules.checkpoint.SLOTS``) or name an object in ``trusted``.
    """
    path = str(find_checkpoint(path))
    meta = read_algorithm_metadata(path)
    algo_class = resolve(meta.get("algorithm_class"), "algorithm_class", "algorithm_class",
                         path, trusted)
    if config is None:
        config = config_from_json(resolve(meta.get("config_class"), "config_class",
                                          "config_class", path, trusted),
                                  meta.get("config", {}), path, trusted)
    algo = algo_class(config)
    try:
        algo.restore_from_path(path)
    except BaseException:
        algo.stop()
        raise
    return algo


# ---- the config as JSON -------------------------------------------------------------------

def config_to_json(config: "AlgorithmConfig") -> dict[str, Any]:
    """Every config attribute as JSON; what cannot be stored becomes an "__unsaved__" marker."""
    return {key: to_json(value, key, lenient=True) for key, value in vars(config).items()}


def config_from_json(config_class: type, data: Mapping[str, Any], path: str,
                     trusted: Sequence[Any] = ()) -> "AlgorithmConfig":
    """Inverse of ``config_to_json``: only keys a fresh ``config_class()`` has are set."""
    config = config_class()
    for key, value in data.items():
        if key not in vars(config):
            raise CheckpointError(f"Checkpoint '{path}': config key {key!r} is not a setting "
                                  f"of {config_class.__name__}.")
        setattr(config, key, from_json(value, path, key, trusted))
    return config
