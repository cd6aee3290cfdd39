"""Module checkpoints: a directory of JSON metadata and safetensors weights, written atomically.

Layout of ``RLModule.save_to_path(path)``::

    path/module_state.safetensors   weights ({param: array}; loads without unpickling code)
    path/metadata.json              format version, class path "module:qualname", constructor
                                    arguments (spaces as JSON); written last
A MultiRLModule writes its own metadata (class, arguments, sub-module specs) and one such
single-module checkpoint per module ID in ``path/<module_id>/``.

Reusable pieces (the algorithm checkpoints build on them):

- ``write_dir_atomically(path, writer)``: ``writer(tmp_dir)`` fills a fresh directory next
  to ``path``; it is fsynced and renamed into place. An earlier checkpoint at ``path`` is
  only replaced once the new one is complete; a crash leaves it (or, during the two
  renames, its ``.<name>.old-*`` sibling) intact, never a half-written ``path``.
- ``write_metadata(dir, meta)`` / ``read_metadata(dir)``: the JSON file whose presence
  marks a complete checkpoint (write it last); reading checks it and the format version.
- ``save_state_tensors(file, state)`` / ``load_state_tensors(file)``: {name: array} <->
  safetensors, with errors naming the file.
- ``spaces_to_json(obj)`` / ``spaces_from_json(obj)``: gym spaces (Box, Discrete,
  MultiDiscrete, MultiBinary, Dict, Tuple), also nested in dicts/lists, <-> JSON values.
- ``class_path(cls)`` / ``import_class(path)``: classes <-> "module:qualname".
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

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
    """Have ``writer`` fill a temp dir next to ``path``, then move it to ``path`` atomically.

    ``path`` may be missing, an empty directory, or an earlier checkpoint (a directory with
    a metadata file); anything else is refused rather than deleted.
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


# ---- spaces and classes as JSON ------------------------------------------------------------

def spaces_to_json(obj: Any) -> Any:
    """``obj`` with every gym space replaced by a JSON-able dict (recurses into dicts/lists)."""
    if isinstance(obj, gym.Space):
        return {"__space__": _space_to_json(obj)}
    if isinstance(obj, Mapping):
        return {k: spaces_to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [spaces_to_json(v) for v in obj]
    return obj


def spaces_from_json(obj: Any) -> Any:
    """The inverse of ``spaces_to_json``."""
    if isinstance(obj, Mapping):
        if set(obj) == {"__space__"}:
            return _space_from_json(obj["__space__"])
        return {k: spaces_from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [spaces_from_json(v) for v in obj]
    return obj


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
    """ "module:qualname" of a class or function (``import_class`` reverses it)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def import_class(path: str) -> Any:
    """The object named by "module:qualname"."""
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _value_to_json(value: Any, key: str) -> Any:
    """A constructor argument as JSON: spaces as dicts, classes/functions as paths."""
    if isinstance(value, gym.Space):
        return spaces_to_json(value)
    if isinstance(value, Mapping):
        return {k: _value_to_json(v, f"{key}['{k}']") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_value_to_json(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _value_to_json(dataclasses.asdict(value), key)
    if isinstance(value, type) or callable(value):
        return {"__object__": class_path(value)}
    raise TypeError(f"Checkpoint: {key} = {value!r} ({type(value).__name__}) is not "
                    "JSON-serializable; keep model_config to numbers, strings, lists, dicts, "
                    "importable classes and functions.")


def _value_from_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"__object__"}:
            return import_class(value["__object__"])
        if set(value) == {"__space__"}:
            return spaces_from_json(value)
        return {k: _value_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    return value


# ---- RLModules -----------------------------------------------------------------------------

def save_module(module: Any, path: str | os.PathLike) -> str:
    """Write ``module`` (an RLModule or MultiRLModule) as a checkpoint directory at ``path``."""
    return str(write_dir_atomically(path, lambda tmp: _write_module(module, tmp)))


def _write_module(module: Any, directory: Path) -> None:
    from rlmodules.multi_rl_module import MultiRLModule

    args = module.get_ctor_args()
    if isinstance(module, MultiRLModule):
        for module_id, sub in module.items():
            if not module_id or os.sep in module_id or module_id.startswith("."):
                raise ValueError(f"Module ID {module_id!r} cannot name a checkpoint "
                                 "sub-directory; use IDs without path separators.")
            (directory / module_id).mkdir()
            _write_module(sub, directory / module_id)
        args["rl_module_specs"] = {mid: _spec_to_json(spec)
                                   for mid, spec in args["rl_module_specs"].items()}
        extra = {"kind": "multi_rl_module", "module_ids": list(module.keys())}
    else:
        save_state_tensors(directory / WEIGHTS_FILE, module.get_state())
        extra = {"kind": "rl_module"}
    write_metadata(directory, {**extra, "class": class_path(type(module)),
                               "ctor_args": _value_to_json(args, "ctor_args")})


def _spec_to_json(spec: Any) -> dict[str, Any]:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return {"spec_class": class_path(type(spec)),
            "fields": _value_to_json(fields, f"{type(spec).__name__}")}


def _spec_from_json(d: Mapping[str, Any]) -> Any:
    return import_class(d["spec_class"])(**_value_from_json(d["fields"]))


def load_module(path: str | os.PathLike) -> Any:
    """Rebuild the module recorded at ``path`` (its class, constructor args, weights)."""
    from rlmodules.compat import construct

    meta = read_metadata(path)
    try:
        module_class = import_class(meta["class"])
        args = _value_from_json(meta["ctor_args"])
        if meta["kind"] == "multi_rl_module":
            args["rl_module_specs"] = {mid: _spec_from_json(s)
                                       for mid, s in args["rl_module_specs"].items()}
    except (ImportError, AttributeError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"Checkpoint '{path}': cannot import what rebuilds the recorded module "
            f"({meta.get('class')}): {err!r}. Classes and functions must be importable by "
            "module and name (not defined inside a function); else build the module yourself "
            "and call restore_from_path().") from err
    try:
        module = construct(module_class, **args)
    except TypeError as err:
        raise CheckpointError(
            f"Checkpoint '{path}': {meta['class']} cannot be rebuilt from its recorded "
            f"constructor arguments ({err}). Build the module yourself and call "
            "restore_from_path().") from err
    restore_module(module, path)
    return module


def restore_module(module: Any, path: str | os.PathLike) -> None:
    """Load the weights at ``path`` into ``module``; errors name the path and the mismatch."""
    from rlmodules.multi_rl_module import MultiRLModule

    path = Path(path)
    meta = read_metadata(path)
    is_multi = isinstance(module, MultiRLModule)
    if (meta.get("kind") == "multi_rl_module") != is_multi:
        held = "a MultiRLModule" if meta.get("kind") == "multi_rl_module" else "a single RLModule"
        hint = " (restore it into multi_module[module_id])" if is_multi else ""
        raise CheckpointError(f"Checkpoint '{path}' holds {held}, but {type(module).__name__} "
                              f"is {'' if is_multi else 'not '}a MultiRLModule{hint}.")
    if is_multi:
        unknown = [mid for mid in meta["module_ids"] if mid not in module]
        if unknown:
            raise CheckpointError(
                f"Checkpoint '{path}' has module(s) {unknown} that {type(module).__name__} lacks "
                f"(it holds {list(module.keys())}).")
        for module_id in meta["module_ids"]:
            restore_module(module[module_id], path / module_id)
        return
    state = load_state_tensors(path / WEIGHTS_FILE)
    try:
        module.set_state(state)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise CheckpointError(f"Checkpoint '{path}' does not fit {type(module).__name__}: "
                              f"{message}") from err
