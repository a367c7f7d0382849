"""Documented configuration fields and `--set key=value` overrides.

Every tunable of an objective, data set or training run is a dataclass field declared with
`option(default, help=..., source=...)`, so that `ftbench objectives --verbose NAME` can show its
name, default, meaning and where the value comes from (paper, released code, or our reading).
A field that `ftbench tune` searches also declares its range there (`search=Search(low, high,
scale)`), beside its default, so the search space is read from the same place as the defaults.
The values a field accepts are declared there too (`choices=`, or bounds `ge=`/`gt=`/`le=`/`lt=`)
and checked for every config by `check_options`; a plugin's `validate()` keeps only the checks
that relate several fields.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .registry import suggest

#: where a default comes from; "protocol" is this benchmark's own protocol (docs/method.md)
SOURCES = ("paper", "released code", "our reading", "protocol", "convention")
# the former name of "protocol", still accepted from plugin files and shown as "protocol"
_LEGACY_SOURCES = {"SPEC": "protocol"}


SCALES = ("log", "linear", "int", "log-int")


@dataclass(frozen=True)
class Search:
    """The range `ftbench tune` searches for one config field: [low, high] on a `scale`.

    `log`: log-uniform (a learning rate, a temperature: what matters is the factor, not the
    difference); `linear`: uniform; `int`: integers low..high; `log-int`: integers, log-uniform.
    `why` says in one line why the range is what it is (shown by `ftbench objectives --verbose`).
    """

    low: float
    high: float
    scale: str = "linear"
    why: str = ""

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"Search scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if not self.low < self.high:
            raise ValueError(f"Search range needs low < high, got [{self.low}, {self.high}]")
        if self.scale in ("log", "log-int") and self.low <= 0:
            raise ValueError(f"a log-scale Search range must be positive, got low={self.low}")

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this field's value from an Optuna trial."""
        if self.scale in ("int", "log-int"):
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.scale == "log-int")
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.scale == "log")

    def describe(self) -> str:
        """`[1e-04, 1e-02] log` - the range as `ftbench objectives --verbose` prints it."""
        fmt = (lambda v: str(int(v))) if self.scale in ("int", "log-int") else (lambda v: f"{v:.3g}")
        return f"[{fmt(self.low)}, {fmt(self.high)}] {self.scale}"


@dataclass(frozen=True)
class Bounds:
    """The values a numeric config field accepts: `ge`/`gt` below, `le`/`lt` above (None: open).

    Declared beside the field with `option(..., ge=0)` and checked for every config by
    `check_options`, so a plugin's `validate()` keeps only the checks that relate several fields.
    Metadata only: never part of a config's hash."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    integer: bool = False  # the field holds an integer (a lower bound 0 then reads "non-negative integer")

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None or self.le is not None and self.lt is not None:
            raise ValueError("Bounds: give at most one of ge/gt and one of le/lt")
        low, high = self.ge if self.ge is not None else self.gt, self.le if self.le is not None else self.lt
        if low is None and high is None:
            raise ValueError("Bounds: give at least one of ge, gt, le, lt")
        if low is not None and high is not None and not low < high:
            raise ValueError(f"Bounds: the lower bound {low} must lie below the upper bound {high}")

    def holds(self, value: Any) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        """The accepted values in words, as error messages and `ftbench objectives NAME` print them:
        `positive`, `at least 1`, `a non-negative integer`, `in [0, 1)`."""
        low, high = self.ge if self.ge is not None else self.gt, self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return f"in {'[' if self.ge is not None else '('}{low:g}, {high:g}{']' if self.le is not None else ')'}"
        if self.gt is not None:
            return "positive" if self.gt == 0 else f"> {self.gt:g}"
        if self.ge is not None:
            if self.ge == 0:
                return "a non-negative integer" if self.integer else ">= 0"
            return f"at least {self.ge:g}"
        return f"at most {self.le:g}" if self.le is not None else f"< {self.lt:g}"


def option(
    default: Any,
    help: str,
    source: str = "our reading",
    choices: tuple | None = None,
    search: Search | None = None,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field carrying its documentation (`help`), provenance (`source`), the values it
    accepts (`choices`, or bounds `ge`/`gt`/`le`/`lt`; checked by `check_options`) and, when
    `ftbench tune` searches it, its range (`search`)."""
    source = _LEGACY_SOURCES.get(source, source)
    bounds = None
    if any(b is not None for b in (ge, gt, le, lt)):
        bounds = Bounds(ge, gt, le, lt, integer=isinstance(default, int) and not isinstance(default, bool))
        if not bounds.holds(default):
            raise ValueError(f"default {default!r} is not {bounds.describe()}")
        if search is not None and not (bounds.holds(search.low) and bounds.holds(search.high)):
            raise ValueError(f"search range {search.describe()} reaches outside the bounds ({bounds.describe()})")
    if search is not None and not (search.low <= default <= search.high):
        raise ValueError(f"default {default!r} lies outside its search range {search.describe()}")
    metadata = {"help": help, "source": source, "choices": choices, "search": search, "bounds": bounds}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_options(config: Any, what: str) -> None:
    """Check every field of dataclass `config` against what its `option` declares (choices,
    bounds); the error names the field as `{what} option 'name'`. Each config family's
    `validate()` calls this first, so a config built directly is checked like one from `--set`."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"{what} option {f.name!r}: expected one of {list(choices)}, got {value!r}")
        bounds = f.metadata.get("bounds")
        if bounds is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{what} option {f.name!r} must be a number ({bounds.describe()}), got {value!r}")
        if not bounds.holds(value):
            raise ValueError(f"{what} option {f.name!r} must be {bounds.describe()}, got {value!r}")


def describe(config_cls: type) -> list[dict[str, Any]]:
    """Name, type, default, meaning and source of every field of a config dataclass."""
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]  # default_factory is callable whenever default is MISSING
        rows.append(
            {
                "name": f.name,
                "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
                "default": default,
                "help": f.metadata.get("help", ""),
                "source": f.metadata.get("source", ""),
                "choices": f.metadata.get("choices"),
                "search": f.metadata.get("search"),
                "bounds": f.metadata.get("bounds"),
            }
        )
    return rows


def search_space(config_cls: type) -> dict[str, Search]:
    """The fields of `config_cls` that `ftbench tune` searches, name -> range.

    A config class may leave out inherited fields that it does not use with a class attribute
    `untuned = ("field", ...)` (e.g. an objective that never reads the primary weight): tuning a
    field without effect would only spend trials."""
    skip = set(getattr(config_cls, "untuned", ()))
    return {
        f.name: f.metadata["search"]
        for f in dataclasses.fields(config_cls)
        if f.metadata.get("search") is not None and f.name not in skip
    }


def parse_literal(text: str) -> Any:
    """Parse a `--set` value as a Python literal only (never evaluated); bare words stay strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check a parsed override against the type of the field's default."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if isinstance(default, int) and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        return str(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(default)(value)
    if type(value) is not type(default):
        raise ValueError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(config: Any, overrides: dict[str, Any], what: str) -> Any:
    """Return a copy of dataclass `config` with `overrides` applied, type-checked and validated."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise KeyError(suggest(key, list(fields), f"{what} option"))
        current = getattr(config, key)
        changes[key] = _coerce(value, current, f"{what} option {key!r}")
    new = dataclasses.replace(config, **changes)
    check_options(new, what)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


def to_jsonable(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(payload: Any) -> str:
    """A short, stable hash of a JSON-able config (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
