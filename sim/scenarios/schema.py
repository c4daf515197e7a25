"""Typed schemas for scenario files and the validator that applies them.

A schema is a mapping from key to `Field`. `parse_section` checks a YAML
mapping against it and returns the parsed values with defaults filled in; every
error names the file, the key path (e.g. `road.lanes`) and what was expected.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from sim.scenarios.params import Choice, Fixed, IntUniform, Param, Uniform


class ScenarioError(ValueError):
    """A scenario or suite file does not match its schema."""


class MissingData(ScenarioError):
    """A scenario's data file (ETH/UCY tracks) is not on this machine: no episode of it can be built."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
DISTRIBUTIONS = ("uniform", "int_uniform", "choice")


class Section(Mapping):
    """A read-only mapping of parsed values (unlike MappingProxyType, it pickles)."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Section({self._data!r})"


@dataclass(frozen=True)
class Where:
    """Location of a value for error messages: the file and the key path inside it."""

    file: str
    path: str = ""

    def child(self, key: str) -> Where:
        return Where(self.file, f"{self.path}.{key}" if self.path else key)

    def item(self, index: int) -> Where:
        return Where(self.file, f"{self.path}[{index}]")

    def fail(self, message: str) -> NoReturn:
        where = f"{self.file}: {self.path}" if self.path else self.file
        raise ScenarioError(f"{where}: {message}")


@dataclass(frozen=True)
class Field:
    """One key of a schema.

    type: "float", "int", "bool", "str", "range" (a fixed [lo, hi] pair), "names" (a list
        of strings), "path"
        (a path index >= 0 or the string "route"), "section" (a nested mapping
        with `fields`) or "list" (a list of such mappings).
    default: the value when the key is absent; REQUIRED makes it mandatory; None
        leaves it absent.
    random: whether a distribution may stand in for a fixed value.
    """

    type: str
    doc: str
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    options: tuple[str, ...] | None = None
    random: bool = True
    fields: Mapping[str, Field] | None = None


def num(
    doc: str, default: Any = REQUIRED, low: float | None = None, high: float | None = None, random: bool = True
) -> Field:
    return Field("float", doc, default, low, high, random=random)


def integer(
    doc: str, default: Any = REQUIRED, low: int | None = None, high: int | None = None, random: bool = True
) -> Field:
    return Field("int", doc, default, low, high, random=random)


def flag(doc: str, default: Any = REQUIRED, random: bool = True) -> Field:
    return Field("bool", doc, default, random=random)


def text(doc: str, default: Any = REQUIRED, options: tuple[str, ...] | None = None, random: bool = False) -> Field:
    return Field("str", doc, default, options=options, random=random)


def section(doc: str, fields: Mapping[str, Field], default: Any = None) -> Field:
    return Field("section", doc, {} if default is None else default, random=False, fields=fields)


def items(doc: str, fields: Mapping[str, Field]) -> Field:
    """A required, non-empty list of mappings, each checked against `fields`."""
    return Field("list", doc, REQUIRED, random=False, fields=fields)


# -- parsing ----------------------------------------------------------------


def parse_section(data: Any, fields: Mapping[str, Field], where: Where) -> Mapping[str, Any]:
    """Parse a mapping against `fields`: unknown keys, missing keys, types and ranges."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where.fail(f"expected a mapping of keys ({', '.join(fields)}), got {_show(data)}")
    for key in data:
        if key not in fields:
            expected = ", ".join(sorted(fields)) or "no keys"
            where.child(str(key)).fail(f"unknown key; expected one of: {expected}")
    out = {}
    for key, spec in fields.items():
        here = where.child(key)
        if key not in data:
            if spec.default is REQUIRED:
                here.fail(f"missing key; expected {_describe(spec)} ({spec.doc})")
            out[key] = _default(spec, here)
        else:
            out[key] = parse_value(data[key], spec, here)
    return Section(out)


def _default(spec: Field, where: Where) -> Any:
    if spec.default is None:
        return None
    if spec.type == "section":
        return parse_section(spec.default, spec.fields or {}, where)
    if spec.type == "list":
        return tuple(spec.default)
    value = _fixed(spec.default, spec, where)
    return Fixed(value) if spec.random else value


def parse_value(value: Any, spec: Field, where: Where) -> Any:
    if spec.type == "section":
        return parse_section(value, spec.fields or {}, where)
    if spec.type == "list":
        if not isinstance(value, list) or not value:
            where.fail(f"expected a non-empty list of mappings ({spec.doc}), got {_show(value)}")
        return tuple(parse_section(v, spec.fields or {}, where.item(i)) for i, v in enumerate(value))
    if isinstance(value, dict):
        if not spec.random:
            where.fail(f"expected {_describe(spec)}; this key takes a fixed value, not a distribution")
        return _distribution(value, spec, where)
    value = _fixed(value, spec, where)
    return Fixed(value) if spec.random else value


def _distribution(value: dict, spec: Field, where: Where) -> Param:
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        where.fail(
            f"expected {_describe(spec)} or exactly one of "
            f"{{uniform: [lo, hi]}}, {{int_uniform: [lo, hi]}}, {{choice: [...]}}; got {_show(value)}"
        )
    kind, args = next(iter(value.items()))
    inner = where.child(kind)
    if kind == "choice":
        if not isinstance(args, list) or not args:
            inner.fail(f"expected a non-empty list of options, got {_show(args)}")
        return Choice(tuple(_fixed(a, spec, inner) for a in args))
    if kind == "uniform" and spec.type != "float":
        inner.fail(f"uniform draws real numbers; this key takes {_describe(spec)} (use int_uniform or choice)")
    if kind == "int_uniform" and spec.type != "int":
        inner.fail(f"int_uniform draws integers; this key takes {_describe(spec)} (use uniform or choice)")
    if not isinstance(args, list) or len(args) != 2:
        inner.fail(f"expected a list [lo, hi], got {_show(args)}")
    lo, hi = (_fixed(a, spec, inner) for a in args)
    if lo > hi:
        inner.fail(f"expected lo <= hi, got [{lo}, {hi}]")
    return Uniform(lo, hi) if kind == "uniform" else IntUniform(lo, hi)


def _fixed(value: Any, spec: Field, where: Where) -> Any:
    """Check one plain value against the field's type and range; numbers come back typed."""
    t = spec.type
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            where.fail(f"expected {_describe(spec)}, got {_show(value)}")
        value = float(value)
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            where.fail(f"expected {_describe(spec)}, got {_show(value)}")
    elif t == "bool":
        if not isinstance(value, bool):
            where.fail(f"expected true or false, got {_show(value)}")
        return value
    elif t == "str":
        if not isinstance(value, str) or (spec.options and value not in spec.options):
            where.fail(f"expected {_describe(spec)}, got {_show(value)}")
        return value
    elif t == "path":
        if value == "route" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        where.fail(f"expected {_describe(spec)}, got {_show(value)}")
    elif t == "names":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            where.fail(f"expected {_describe(spec)}, got {_show(value)}")
        return tuple(value)
    elif t == "range":
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        if not ok or value[0] > value[1]:
            where.fail(f"expected {_describe(spec)}, got {_show(value)}")
        for v in value:
            _check_range(float(v), spec, where)
        return (float(value[0]), float(value[1]))
    _check_range(value, spec, where)
    return value


def _check_range(value: float, spec: Field, where: Where) -> None:
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        where.fail(f"expected {_describe(spec)}, got {value!r} (out of range)")


def _describe(spec: Field) -> str:
    bounds = ""
    if spec.low is not None or spec.high is not None:
        lo = "-inf" if spec.low is None else f"{spec.low:g}"
        hi = "inf" if spec.high is None else f"{spec.high:g}"
        bounds = f" in [{lo}, {hi}]"
    return {
        "float": f"a number{bounds}",
        "int": f"an integer{bounds}",
        "bool": "true or false",
        "str": f"one of {list(spec.options)}" if spec.options else "a string",
        "range": f"a list [lo, hi] with lo <= hi{bounds}",
        "names": "a non-empty list of strings",
        "path": "a path index >= 0 or 'route'",
        "section": "a mapping",
        "list": "a list of mappings",
    }[spec.type]


# Values are shown cut to a few items per level and a few levels deep *while* formatting: a huge value from
# someone else's file must not be expanded in full just to be cut afterwards.
_SHORT = reprlib.Repr()  # (keyword limits need Python 3.12)
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 40


def _show(value: Any) -> str:
    text = _SHORT.repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
