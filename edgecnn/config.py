"""Device side: strict YAML -> frozen dataclasses.

Unknown or misspelt keys are errors that name the file, the key and the valid keys; values are
checked against the field's annotated type and, for fields made with ``bounded``, its range. Nested
dataclasses, lists, tuples, Optional and Literal-like enums (StrEnum) are supported, which is all our
recipes and profiles need.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgecnn.errors import ConfigError
from edgecnn.registry import did_you_mean

T = TypeVar("T")


def bounded(default: Any = dataclasses.MISSING, *, lo: float | None = None, hi: float | None = None, above: float | None = None):
    """A dataclass field whose value the strict loader keeps in range: ``lo <= v <= hi``, and ``v > above``."""
    kw = {} if default is dataclasses.MISSING else {"default": default}
    return dataclasses.field(metadata={"range": (lo, hi, above)}, **kw)


def _range_text(lo: float | None, hi: float | None, above: float | None) -> str:
    parts = ([f"above {above:g}"] if above is not None else []) + ([f"at least {lo:g}"] if lo is not None else [])
    parts += [f"at most {hi:g}"] if hi is not None else []
    return " and ".join(parts)


def check_range(value: Any, rng: tuple, source: str, where: str) -> None:
    lo, hi, above = rng
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and value <= above):
        raise ConfigError(f"{source}: '{where}' must be {_range_text(lo, hi, above)}; received {value!r}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with clear errors for missing files, encodings and syntax errors."""
    from edgecnn.text import read_text

    path = Path(path)
    text = read_text(path, "config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to read") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load(cls: type[T], path: str | Path) -> T:
    """Load a YAML file into the frozen dataclass ``cls``."""
    return from_dict(cls, read_yaml(path), source=str(path))


def from_dict(cls: type[T], data: Any, *, source: str = "<config>", where: str = "") -> T:
    """Build ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where or cls.__name__}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(
                f"{source}: unknown key '{_join(where, key)}' (valid keys: {valid}).{did_you_mean(str(key), list(fields))}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, _join(where, name))
            if "range" in field.metadata:
                check_range(kwargs[name], field.metadata["range"], source, _join(where, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{_join(where, name)}'")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML/JSON-friendly data (enums as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _yaml_float(text: str) -> str:
    """How to write ``text`` (a number YAML 1.1 read as a string, such as 1e-3) so that YAML reads a number."""
    value = float(text)
    plain = f"{value:.10f}".rstrip("0").rstrip(".")
    mantissa, _, exponent = text.lower().partition("e")
    return f"{plain} or {mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}" if exponent else plain


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, source: str, where: str) -> Any:
    """``value`` as the annotated type ``tp`` (one handler per kind of type), or a ConfigError naming the key."""
    for applies, handler in _HANDLERS:
        if applies(tp):
            return handler(tp, value, source, where)
    return value


def _union(tp: Any, value: Any, source: str, where: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(arg, value, source, where)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise ConfigError(f"{source}: '{where}' has an invalid value {value!r}")


def _enum(tp: Any, value: Any, source: str, where: str) -> Any:
    try:
        return tp(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in tp)
        raise ConfigError(f"{source}: '{where}' must be one of {allowed}; received {value!r}") from None


def _sequence(tp: Any, value: Any, source: str, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: '{where}' must be a list; received {value!r}")
    inner = (typing.get_args(tp) or (Any,))[0]
    items = [_coerce(inner, v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if typing.get_origin(tp) is tuple else items


def _mapping(tp: Any, value: Any, source: str, where: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{where}' must be a mapping; received {value!r}")
    return dict(value)


def _float(tp: Any, value: Any, source: str, where: str) -> float:
    if isinstance(value, str) and _is_number(value):
        raise ConfigError(
            f"{source}: '{where}' must be a number; received the text {value!r}",
            hint=f"YAML reads {value} as text: write it with a dot, e.g. {_yaml_float(value)}",
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}: '{where}' must be a number; received {value!r}")
    return float(value)


def _scalar(tp: Any, value: Any, source: str, where: str) -> Any:
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{source}: '{where}' must be {_type_name(tp)}; received {value!r}")
    return value


_HANDLERS = (
    (lambda tp: tp is Any, lambda tp, value, *_: value),
    (lambda tp: typing.get_origin(tp) in (typing.Union, types.UnionType), _union),
    (dataclasses.is_dataclass, lambda tp, value, source, where: from_dict(tp, value, source=source, where=where)),
    (lambda tp: isinstance(tp, type) and issubclass(tp, enum.Enum), _enum),
    (lambda tp: typing.get_origin(tp) in (list, tuple), _sequence),
    (lambda tp: typing.get_origin(tp) is dict, _mapping),
    (lambda tp: tp is float, _float),
    (lambda tp: tp in (int, bool, str), _scalar),
)
