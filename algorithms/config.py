"""Typed configuration: dataclasses built from YAML blocks and ``key=value`` overrides.

Every value that enters a config goes through :func:`coerce`, so a string from the command line and a
number from YAML end up as the same Python type, and a bad value is rejected at load time with the key,
the expected type and the offending value named (never half-way through a run).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

# torch.compile modes of Agent.compile (algorithms/compiled.py); here so that the CLI can offer them without torch.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the valid choices."""


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type annotation of every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError


def _coerce_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    number = float(value) if isinstance(value, str) else value
    # "1e6" and 1e6 are common ways to write step counts; accept them only when integral.
    if isinstance(number, float) and number.is_integer():
        return int(number)
    raise TypeError


def _coerce_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError
    number = float(value)
    if math.isnan(number):
        raise TypeError
    return number


def _coerce_sequence(value: Any, item_type: Any) -> tuple:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        value = [part for part in text.split(",") if part.strip()] if text else []
    if not isinstance(value, (list, tuple)):
        raise TypeError
    return tuple(coerce(item, item_type) for item in value)


def coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` to type ``tp`` (int, float, bool, str, tuple[T, ...], Optional[T]).

    Raises TypeError/ValueError when the value does not fit the type.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if origin in (tuple, list):
        args = typing.get_args(tp)
        return _coerce_sequence(value, args[0] if args else str)
    if tp is bool:
        return _coerce_bool(value)
    if tp is int:
        return _coerce_int(value)
    if tp is float:
        return _coerce_float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise TypeError
        return str(value)
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r}")


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``values`` (missing keys keep their defaults)."""
    types_by_key = field_types(cls)
    unknown = sorted(set(values) - set(types_by_key))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(types_by_key), n=1, cutoff=0.6)
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))}{_where(where)}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; valid keys of {cls.__name__}: {', '.join(sorted(types_by_key))}"
        )
    kwargs = {key: coerce_key(cls, key, value, where) for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"invalid {cls.__name__}{_where(where)}: {error}") from None


def coerce_key(cls: type, key: str, value: Any, where: str = "") -> Any:
    tp = field_types(cls)[key]
    try:
        return coerce(value, tp)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bad value for {key!r}{_where(where)}: expected {_type_name(tp)}, got {value!r}"
        ) from None


def replace(config: Any, values: Mapping[str, Any], where: str = "") -> Any:
    """A copy of ``config`` with ``values`` applied and validated."""
    merged = {**to_dict(config), **values}
    return build(type(config), merged, where)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict (tuples become lists)."""
    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def parse_override(text: str) -> tuple[str, str]:
    """Split ``key=value``; the value stays a string until it is coerced to the field's type."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    return key.strip(), value.strip()


def read_yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {yaml_error_text(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def yaml_error_text(error: Exception) -> str:
    """``line 3, column 7: could not find expected ':'`` (1-based, as editors count) from a PyYAML error."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def check(condition: bool, message: str) -> None:
    """Used in ``__post_init__`` to reject out-of-range values with a readable message."""
    if not condition:
        raise ValueError(message)


# Declared fields: each carries its meaning (the table of docs/configuration.md) and its valid range --------------
@dataclasses.dataclass(frozen=True)
class Range:
    """The values a field accepts: ``accepts(value)``, described as ``expected`` in the error message."""

    accepts: Callable[[Any], bool]
    expected: str

    def __call__(self, name: str, value: Any) -> None:
        check(self.accepts(value), f"{name} must be {self.expected}, got {value!r}")


positive = Range(lambda v: v > 0, "> 0")
non_negative = Range(lambda v: v >= 0, ">= 0")
positive_widths = Range(lambda v: len(v) >= 1 and min(v) >= 1, "positive widths")


def at_least(low: int) -> Range:
    return Range(lambda v: v >= low, f">= {low}")


def interval(low: float, high: float, closed: str = "(]") -> Range:
    """Values between ``low`` and ``high``; ``closed`` says which ends are included, in interval notation."""
    above = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
    below = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
    return Range(lambda v: above(v) and below(v), f"in {closed[0]}{low:g}, {high:g}{closed[1]}")


def or_none(valid: Range) -> Range:
    """``valid`` or None (a field whose null means "not set": a fallback applies)."""
    return Range(lambda v: v is None or valid.accepts(v), f"{valid.expected} or null")


def one_of(choices: Iterable[str]) -> Range:
    choices = list(choices)
    return Range(lambda v: v in choices, f"one of {choices}")


def field(default: Any, help: str, check: Range | None = None) -> Any:
    """A dataclass field with its meaning and, if given, its valid range (checked by :func:`validate`)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def redefault(cls: type, name: str, default: Any) -> Any:
    """Field ``name`` of dataclass ``cls`` with another default: for a subclass that changes only the default."""
    inherited = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=default, metadata=inherited.metadata)


def meaning(cls: type, name: str) -> str | None:
    """The help text of field ``name`` of ``cls`` (None where the field was declared without one)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("help")


def validate(config: Any) -> None:
    """Check every declared field of ``config`` against its range; ValueError names the field, value and range."""
    for f in dataclasses.fields(config):
        if f.metadata.get("check") is not None:
            f.metadata["check"](f.name, getattr(config, f.name))


def _where(where: str) -> str:
    return f" in {where}" if where else ""
