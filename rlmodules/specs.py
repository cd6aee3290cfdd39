"""I/O specs of the alpha API: what a forward pass's batch or output must hold.

A module's ``input_specs_<phase>()`` / ``output_specs_<phase>()`` return a ``SpecType``:

- a list of keys, where a tuple is a path into nested dicts: ``["obs", ("obs", "global")]``;
- or a dict of key (or key path) -> ``None`` (present), a type (``isinstance``), a
  ``TensorSpec`` (shape check) or a nested dict spec.

``RLModule`` checks them around every ``forward_*`` call; the default specs are None.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch

SpecType = Union[Sequence[Union[str, tuple]], Mapping[Union[str, tuple], Any]]


class SpecCheckError(ValueError):
    """A batch or forward output does not match the module's declared I/O spec."""


class TensorSpec:
    """A tensor shape like ``TensorSpec("b, h", h=10)``: named dims, some of them fixed.

    Dims given as keywords must have that size; a name used twice must have one size.
    ``framework="torch"`` also requires a ``torch.Tensor``.
    """

    def __init__(self, shape: str, *, dtype: Any = None, framework: str | None = None,
                 **dims: int) -> None:
        self.names = [name.strip() for name in shape.split(",") if name.strip()]
        unknown = sorted(set(dims) - set(self.names))
        if unknown:
            raise ValueError(f"TensorSpec('{shape}'): sizes given for {unknown}, which are not "
                             f"dims of the shape {self.names}.")
        self.dims = dims
        self.dtype = dtype
        self.framework = framework

    def check(self, value: Any, where: str) -> None:
        if self.framework == "torch" and not isinstance(value, torch.Tensor):
            raise SpecCheckError(f"{where}: expected a torch.Tensor, got {type(value).__name__}.")
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != len(self.names):
            raise SpecCheckError(f"{where}: expected {len(self.names)} dims "
                                 f"({', '.join(self.names)}), got shape {shape}.")
        sizes: dict[str, int] = dict(self.dims)
        for name, size in zip(self.names, shape):
            if sizes.setdefault(name, size) != size:
                raise SpecCheckError(f"{where}: dim '{name}' must be {sizes[name]}, got shape "
                                     f"{shape} for ({', '.join(self.names)}).")
        if self.dtype is not None and value.dtype != self.dtype:
            raise SpecCheckError(f"{where}: expected dtype {self.dtype}, got {value.dtype}.")


class TorchTensorSpec(TensorSpec):
    """A TensorSpec that also requires a ``torch.Tensor``."""

    def __init__(self, shape: str, *, dtype: Any = None, **dims: int) -> None:
        super().__init__(shape, dtype=dtype, framework="torch", **dims)


def check_spec(spec: SpecType, data: Any, where: str) -> None:
    """Raise SpecCheckError naming ``where`` and the key if ``data`` does not match ``spec``."""
    if isinstance(spec, Mapping):
        for key, expected in spec.items():
            value = _lookup(data, key, where)
            path = f"{where}[{_path_str(key)}]"
            if expected is None:
                continue
            if isinstance(expected, TensorSpec):
                expected.check(value, path)
            elif isinstance(expected, Mapping):
                check_spec(expected, value, path)
            elif isinstance(expected, type):
                if not isinstance(value, expected):
                    raise SpecCheckError(f"{path}: expected a {expected.__name__}, got "
                                         f"{type(value).__name__}.")
            else:
                raise TypeError(f"{where}: spec for {_path_str(key)} is {expected!r}; use None, "
                                "a type, a TensorSpec or a nested dict.")
    elif isinstance(spec, (list, tuple, set)):
        for key in spec:
            _lookup(data, key, where)
    else:
        raise TypeError(f"{where}: a spec is a list of keys or a dict, got {spec!r}.")


def _lookup(data: Any, key: str | tuple, where: str) -> Any:
    value = data
    for part in key if isinstance(key, tuple) else (key,):
        if not isinstance(value, Mapping) or part not in value:
            have = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise SpecCheckError(f"{where}: missing key {_path_str(key)} (found {have}).")
        value = value[part]
    return value


def _path_str(key: str | tuple) -> str:
    return "".join(f"[{k!r}]" for k in key)[1:-1] if isinstance(key, tuple) else repr(key)
