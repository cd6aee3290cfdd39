"""Module checkpoints: a directory of JSON metadata and safetensors weights, written atomically.

Layout of ``RLModule.save_to_path(path)``::

    path/module_state.safetensors   weights ({param: array}; loads without unpickling code)
    path/metadata.json              format version, class "module:qualname", constructor
                                    arguments (``to_json``); written last
A MultiRLModule writes its own metadata (class, arguments with the sub-module specs) and one
such single-module checkpoint per module ID in ``path/<module_id>/``.

Loading never runs code a checkpoint names: each stored name is resolved for the slot of its
key (``SLOTS``: e.g. ``module_class`` -> an RLModule subclass) and refused with a
CheckpointError unless it fits; only class slots import (the module holding the class).

The algorithm checkpoints build on the pieces below: atomic directories, the metadata
file, safetensors weights and one JSON encoding of values (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "module_state.safetensors"


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete, corrupt or does not fit what loads it."""


# ---- atomic directories -----------------------------------------------------------------------

def write_dir_atomically(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Have ``writer`` fill a temp dir next to ``path``, then fsync and move it to ``path``.

    ``path`` may be missing, an empty directory, or an earlier checkpoint (a directory with
    a metadata file); anything else is refused rather than deleted. A crash leaves the
    earlier checkpoint (or, between the two renames, its ``.<name>.old-*`` sibling) intact.
    """
    path = Path(path).absolute()
    if path.exists() and not (path.is_dir() and (
            (path / METADATA_FILE).is_file() or not any(path.iterdir()))):
        raise FileExistsError(
            f"Cannot write a checkpoint to '{path}': it exists and is not a checkpoint "
            f"(no {METADATA_FILE}) nor an empty directory. Choose another path or remove it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        os.chmod(tmp, 0o755)
        writer(tmp)
        _fsync_tree(tmp)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync(path.parent)
    except BaseException:
        if old.exists() and not path.exists():
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


# ---- metadata and weights ------------------------------------------------------------------

def write_metadata(directory: Path, meta: Mapping[str, Any]) -> None:
    """Write ``metadata.json`` (with ``format_version``); do it last, it marks completeness."""
    text = json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=1)
    (directory / METADATA_FILE).write_text(text)


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the checkpoint at ``directory``, or an error naming the path."""
    directory = Path(directory)
    file = directory / METADATA_FILE
    if not file.is_file():
        if directory.exists():
            what = f"has no {METADATA_FILE} (not a checkpoint, or an interrupted save)"
        else:
            backups = sorted(directory.parent.glob(f".{directory.name}.old-*"))
            what = "does not exist" + (f"; a save interrupted while swapping directories left "
                                       f"the previous checkpoint at '{backups[-1]}'" if backups
                                       else "")
        raise FileNotFoundError(f"Checkpoint '{directory}' {what}.")
    try:
        meta = json.loads(file.read_text())
        version = meta["format_version"]
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as err:
        raise CheckpointError(f"Checkpoint '{directory}': {METADATA_FILE} is corrupt ({err!r}).") \
            from err
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint '{directory}' has format version {version!r}; this "
            f"code reads up to version {FORMAT_VERSION}. Update the package to load it.")
    return meta


def save_state_tensors(file: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``{name: ndarray or tensor}`` as a safetensors file."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor)
                                      else v) for k, v in state.items()}
    save_file(arrays, str(file))


def load_state_tensors(file: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file as ``{name: ndarray}``; missing or corrupt -> error naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not Path(file).is_file():
        raise FileNotFoundError(f"Checkpoint weights '{file}' do not exist.")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"Checkpoint weights '{file}' are truncated or corrupt ({err}).") \
            from err


# ---- values as JSON -------------------------------------------------------------------------

# What JSON lacks, as one-key dicts (a dataclass adds "fields"), read back by ``from_json``.
MARKERS = ("__space__", "__set__", "__items__", "__array__", "__object__", "__dataclass__",
           "__unsaved__")


def to_json(value: Any, key: str, arrays: dict[str, np.ndarray] | None = None,
            lenient: bool = False) -> Any:
    """``value`` as JSON: spaces, sets, non-str-keyed dicts and dataclasses as markers,
    importable classes and functions as "module:qualname", arrays moved into ``arrays``
    (when given). Anything else raises TypeError naming ``key``, or with ``lenient`` becomes
    an "__unsaved__" marker that loading reports."""
    def enc(v: Any, k: str) -> Any:
        return to_json(v, k, arrays, lenient)

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and arrays is not None:
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and arrays is not None:
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, gym.Space):
        return {"__space__": _space_to_json(value)}
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted(enc(v, key) for v in value)}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: enc(v, f"{key}[{k!r}]") for k, v in value.items()}
        return {"__items__": [[enc(k, key), enc(v, f"{key}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [enc(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": class_path(type(value)), "fields": {f.name: enc(
            getattr(value, f.name), f"{key}.{f.name}") for f in dataclasses.fields(value)}}
    if (inspect.isclass(value) or inspect.isroutine(value)) and _importable(value):
        return {"__object__": class_path(value)}
    if lenient:
        return {"__unsaved__": repr(value)}
    raise TypeError(f"Checkpoint: {key} = {value!r} ({type(value).__name__}) is not "
                    "JSON-serializable; keep configs and states to numbers, strings, lists, "
                    "dicts, arrays, spaces, dataclasses, importable classes and functions.")


def from_json(node: Any, path: Any, key: str, trusted: Sequence[Any] = (),
              arrays: Mapping[str, np.ndarray] | None = None, slot: str | None = None) -> Any:
    """The inverse of ``to_json``. A stored name is resolved for the slot of the key it is
    stored under (``resolve``); dataclasses are rebuilt only when their class fits the
    "__dataclass__" slot. Nothing else is imported, called or constructed."""
    slot = key if slot is None else slot
    if isinstance(node, list):
        return [from_json(v, path, f"{key}[{i}]", trusted, arrays, slot)
                for i, v in enumerate(node)]
    kind = next(iter(node), None) if isinstance(node, dict) else None
    if kind not in MARKERS:
        return {k: from_json(v, path, f"{key}[{k!r}]", trusted, arrays, k)
                for k, v in node.items()} if isinstance(node, dict) else node
    value = node[kind]
    if kind == "__object__":
        return resolve(value, slot, key, path, trusted)
    if kind == "__unsaved__":
        raise CheckpointError(
            f"Checkpoint '{path}': {key} ({value}) was not saved: the config held a lambda, a "
            "local function or another object a checkpoint cannot store. Pass the config: "
            "Algorithm.from_checkpoint(path, config=my_config).")
    try:
        if kind == "__dataclass__":
            cls = resolve(value, kind, key, path, trusted)
            return cls(**from_json(node.get("fields", {}), path, key, trusted, arrays))
        if kind == "__space__":
            return _space_from_json(value)
        if kind == "__array__":
            return arrays[value]  # type: ignore[index]
        decoded = from_json(value, path, key, trusted, arrays, slot)
        return set(decoded) if kind == "__set__" else dict(decoded)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"Checkpoint '{path}': {key} holds a malformed {kind} entry "
                              f"({err!r}).") from err


def _bound(array: np.ndarray) -> Any:
    """A Box bound as a scalar when uniform (image spaces stay small), else a nested list."""
    return array.flat[0].item() if array.size and np.all(array == array.flat[0]) else \
        array.tolist()


def _space_to_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "low": _bound(space.low), "high": _bound(space.high),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(),
                "start": space.start.tolist(), "dtype": str(space.dtype)}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: _space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [_space_to_json(s) for s in space.spaces]}
    raise TypeError(f"Cannot write {space!r} to a checkpoint: supported spaces are Box, "
                    "Discrete, MultiDiscrete, MultiBinary, Dict and Tuple.")


def _space_from_json(d: Mapping[str, Any]) -> gym.Space:
    kind = d["type"]
    if kind == "Box":
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])
        return gym.spaces.Box(low=np.full(shape, d["low"], dtype), dtype=dtype,
                              high=np.full(shape, d["high"], dtype))
    if kind == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d["start"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(d["nvec"], dtype=np.dtype(d["dtype"]), start=d["start"])
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(d["n"])
    if kind == "Dict":
        return gym.spaces.Dict({k: _space_from_json(s) for k, s in d["spaces"].items()})
    if kind == "Tuple":
        return gym.spaces.Tuple([_space_from_json(s) for s in d["spaces"]])
    raise CheckpointError(f"Unknown space type {kind!r} in checkpoint metadata.")


def class_path(obj: Any) -> str:
    """ "module:qualname" of a class or function (what ``resolve`` reads)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def lookup(name: str) -> Any:
    """The object named "module:qualname": imports the module, then reads attributes
    statically (no descriptor or module ``__getattr__`` runs)."""
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part)
    return obj


def _importable(obj: Any) -> bool:
    try:
        return lookup(class_path(obj)) is obj
    except (ImportError, AttributeError, ValueError):
        return False


# ---- slots: what a stored name may stand for ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Slot:
    """What a name stored under a key may resolve to: a subclass of ``bases`` (imported
    from the project), or one of the objects ``values()`` returns (matched by name)."""

    what: str
    bases: tuple[str, ...] = ()
    values: Callable[[], list[Any]] = list


def _layer_fns() -> list[Any]:
    from torch.nn.modules import activation

    return [o for m in (torch.nn.init, activation) for o in vars(m).values()
            if getattr(o, "__module__", None) == m.__name__ and (inspect.isfunction(o) or (
                inspect.isclass(o) and issubclass(o, torch.nn.Module)))]


# Key -> slot; any other key holds model_config-like values: initializers and activations.
# The algorithm side declares its own keys (algorithms/checkpoints.py).
SLOTS: dict[str, Slot] = {
    "module_class": Slot("an RLModule subclass", ("rlmodules.rl_module:RLModule",)),
    "multi_rl_module_class": Slot("a MultiRLModule subclass",
                                  ("rlmodules.multi_rl_module:MultiRLModule",)),
    "catalog_class": Slot("a Catalog subclass", ("rlmodules.catalog:Catalog",)),
    "__dataclass__": Slot("an RLModuleSpec, MultiRLModuleSpec or DefaultModelConfig", (
        "rlmodules.rl_module:RLModuleSpec", "rlmodules.multi_rl_module:MultiRLModuleSpec",
        "rlmodules.default_model_config:DefaultModelConfig")),
}
_LAYER_FN = Slot("a torch.nn.init function or a torch.nn activation class", values=_layer_fns)


def resolve(name: Any, slot: str, key: str, path: Any, trusted: Sequence[Any] = ()) -> Any:
    """The object ``name`` stands for, if it is in ``trusted`` or fits ``SLOTS[slot]``;
    else a CheckpointError naming ``path``, ``key`` and ``name``. Only a class slot imports
    (the module holding the class); nothing is called."""
    fits = SLOTS.get(slot, _LAYER_FN)
    for obj in (*trusted, *fits.values()):
        if class_path(obj) == name:
            return obj
    refused = (f"Checkpoint '{path}': {key} = {name!r} is refused: it must be {fits.what}. "
               "To load an object you trust, pass it: from_checkpoint(path, trusted=[obj]), "
               "or for an algorithm from_checkpoint(path, config=my_config).")
    if not fits.bases:
        raise CheckpointError(refused)
    try:
        obj = lookup(name)
    except Exception as err:  # Whatever importing the named module raised.
        module_name, _, qualname = str(name).partition(":")
        raise CheckpointError(
            f"Checkpoint '{path}': cannot import {key} = {name!r}: class {qualname!r}, recorded "
            f"in module {module_name!r}, is not importable now ({err!r}). Define the class in "
            "an importable module (not in __main__, a notebook or a function) and save again; "
            f"or pass it: from_checkpoint(path, trusted=[{qualname.rpartition('.')[2]}]) (an "
            "algorithm: from_checkpoint(path, config=my_config)); or build the module yourself "
            "and call restore_from_path().") from err
    if not (inspect.isclass(obj) and issubclass(obj, tuple(lookup(b) for b in fits.bases))):
        raise CheckpointError(refused)
    return obj


# ---- RLModules -----------------------------------------------------------------------------

def save_module(module: Any, path: str | os.PathLike) -> str:
    """Write ``module`` (an RLModule or MultiRLModule) as a checkpoint directory at ``path``."""
    return str(write_dir_atomically(path, lambda tmp: _write_module(module, tmp)))


def _is_multi(module: Any) -> bool:
    """A MultiRLModule (told by what it holds: this module imports no module class)."""
    return hasattr(module, "rl_module_specs")


def _write_module(module: Any, directory: Path) -> None:
    if _is_multi(module):
        for module_id, sub in module.items():
            if not module_id or os.sep in module_id or module_id.startswith("."):
                raise ValueError(f"Module ID {module_id!r} cannot name a checkpoint "
                                 "sub-directory; use IDs without path separators.")
            (directory / module_id).mkdir()
            _write_module(sub, directory / module_id)
        extra = {"kind": "multi_rl_module", "module_ids": list(module.keys())}
    else:
        save_state_tensors(directory / WEIGHTS_FILE, module.get_state())
        extra = {"kind": "rl_module"}
    write_metadata(directory, {**extra, "class": class_path(type(module)),
                               "ctor_args": to_json(module.get_ctor_args(), "ctor_args")})


def _read_module_metadata(path: str | os.PathLike) -> dict[str, Any]:
    meta = read_metadata(path)
    if meta.get("kind") not in ("rl_module", "multi_rl_module"):
        raise CheckpointError(
            f"'{path}' is not a module checkpoint (it holds a {meta.get('kind')}); pass a "
            "directory written by RLModule.save_to_path() (in an algorithm checkpoint: its "
            "learner_group/learner/rl_module/<module_id>).")
    return meta


def load_module(path: str | os.PathLike, trusted: Sequence[Any] = ()) -> Any:
    """Rebuild the module at ``path`` from its class and constructor arguments, then load its
    weights; every stored name must fit its slot or name an object in ``trusted``."""
    meta = _read_module_metadata(path)
    multi = meta.get("kind") == "multi_rl_module"
    cls = resolve(meta.get("class"), "multi_rl_module_class" if multi else "module_class",
                  "class", path, trusted)
    args = from_json(meta.get("ctor_args", {}), path, "ctor_args", trusted)
    specs = args.get("rl_module_specs") if multi else {}
    spec_class = lookup("rlmodules.rl_module:RLModuleSpec")
    if not (isinstance(specs, dict) and all(isinstance(s, spec_class) for s in specs.values())):
        raise CheckpointError(f"Checkpoint '{path}': ctor_args['rl_module_specs'] must map "
                              f"module IDs to RLModuleSpecs, got {specs!r}.")
    try:
        module = cls(**args) if multi else spec_class(module_class=cls, **args).build()
    except TypeError as err:
        raise CheckpointError(
            f"Checkpoint '{path}': {meta['class']} cannot be rebuilt from its recorded "
            f"constructor arguments ({err}). Build the module yourself and call "
            "restore_from_path().") from err
    restore_module(module, path)
    return module


def restore_module(module: Any, path: str | os.PathLike) -> None:
    """Load the weights at ``path`` into ``module``; errors name the path and the mismatch."""
    path = Path(path)
    meta = _read_module_metadata(path)
    is_multi = _is_multi(module)
    if (meta.get("kind") == "multi_rl_module") != is_multi:
        held = "a MultiRLModule" if meta.get("kind") == "multi_rl_module" else "a single RLModule"
        hint = " (restore it into multi_module[module_id])" if is_multi else ""
        raise CheckpointError(f"Checkpoint '{path}' holds {held}, but {type(module).__name__} "
                              f"is {'' if is_multi else 'not '}a MultiRLModule{hint}.")
    if is_multi:
        # An inference-only MultiRLModule leaves out the learner-only modules it saved.
        skip = [mid for mid in meta["module_ids"] if mid not in module and module.inference_only
                and read_metadata(path / mid).get("ctor_args", {}).get("learner_only")]
        unknown = [mid for mid in meta["module_ids"] if mid not in module and mid not in skip]
        if unknown:
            raise CheckpointError(
                f"Checkpoint '{path}' has module(s) {unknown} that {type(module).__name__} lacks "
                f"(it holds {list(module.keys())}).")
        for module_id in meta["module_ids"]:
            if module_id not in skip:
                restore_module(module[module_id], path / module_id)
        return
    state = load_state_tensors(path / WEIGHTS_FILE)
    try:
        for name, own in module.get_state().items():  # set_state() checks keys and shapes.
            if name in state and own.dtype != state[name].dtype:
                raise ValueError(f"parameter '{name}' has dtype {own.dtype} in the module but "
                                 f"{state[name].dtype} in the state")
        module.set_state(state)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise CheckpointError(f"Checkpoint '{path}' does not fit {type(module).__name__}: "
                              f"{message}") from err
