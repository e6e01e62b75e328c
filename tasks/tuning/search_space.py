"""Search spaces: a default suited to XGBoost, or a YAML/JSON file of float/int/categorical params,
optionally with ConfigSpace-style conditions and forbidden clauses.

Flat format (one entry per XGBoost parameter, no conditions):

    learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
    max_depth: {type: int, low: 3, high: 10}
    max_bin: {type: categorical, choices: [128, 256]}
    subsample: 0.8            # a bare value fixes the parameter

Sectioned format (the same entries under `parameters`; `conditions` and `forbiddens` use the key
names of ConfigSpace's JSON format, see data/search_space_conditional.yaml):

    parameters:
      booster: {type: categorical, choices: [gbtree, dart]}
      rate_drop: {type: float, low: 0.0, high: 0.3}
      grow_policy: {type: categorical, choices: [depthwise, lossguide]}
      max_leaves: {type: int, low: 16, high: 256, log: true}
      max_depth: {type: int, low: 0, high: 10}
    conditions:
      - {child: rate_drop, parent: booster, type: EQ, value: dart}
      - {child: max_leaves, parent: grow_policy, type: IN, values: [lossguide]}
      - {child: C, type: AND, conditions: [{child: C, parent: A, type: NEQ, value: 1}, ...]}
    forbiddens:
      - {type: AND, clauses: [{name: grow_policy, type: EQUALS, value: depthwise}, {name: max_depth, type: EQUALS, value: 0}]}
      - {name: booster, type: IN, values: [dart]}

Conditions: `EQ` (value), `NEQ` (value) or `IN` (values) on a categorical or int parent. A child is
sampled only when all of its conditions hold (several conditions on one child are ANDed, as
ConfigSpace's AndConjunction; `type: AND` with a `conditions` list writes the same), and a child of
an inactive parent is inactive. Forbiddens: `EQUALS` (value), `IN` (values), or an `AND` of those
(`clauses`, ConfigSpace's ForbiddenAndConjunction); a configuration is forbidden when every clause
matches, and a clause on an inactive parameter matches nothing.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import optuna
import yaml

from tasks import yamltext
from tasks.contracts import DEFAULT_MAX_BIN
from tasks.errors import TuneflowError
from tasks.objectstore import filesystem

DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
    "max_depth": {"type": "int", "low": 3, "high": 10},
    "min_child_weight": {"type": "float", "low": 0.5, "high": 20.0, "log": True},
    "subsample": {"type": "float", "low": 0.5, "high": 1.0},
    "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
    "reg_lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "reg_alpha": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "max_bin": DEFAULT_MAX_BIN,
}
_TYPES = {"float", "int", "categorical"}
_SECTIONS = {"parameters", "conditions", "forbiddens"}
_CONDITION_TYPES = ("EQ", "NEQ", "IN")
_FORBIDDEN_TYPES = ("EQUALS", "IN", "AND")
_ENUMERATE_LIMIT = 100_000
_GRID_LIMIT = 1_000_000  # configurations a grid search may list (Optuna's GridSampler holds them all)
_INT_LIMIT = 2**53  # int bounds Optuna handles exactly (it computes with floats)
_SCALARS = (str, int, float, bool)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_FIX = "see data/search_space.yaml for the format: NAME: {type: float|int|categorical, low, high[, log][, step]} or {type: categorical, choices: [...]}."
_FIX_CONDITION = (
    "write a condition as {child: NAME, parent: NAME, type: EQ|NEQ, value: V} or {child: NAME, parent: NAME, type: IN, values: [...]}"
    " (see data/search_space_conditional.yaml)."
)
_FIX_FORBIDDEN = (
    "write a forbidden clause as {name: NAME, type: EQUALS, value: V}, {name: NAME, type: IN, values: [...]}"
    " or {type: AND, clauses: [...]} (see data/search_space_conditional.yaml)."
)


def _same(a: Any, b: Any) -> bool:
    """Equal, without True matching 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _among(value: Any, values: tuple[Any, ...] | list[Any]) -> bool:
    return any(_same(value, v) for v in values)


def _text(values: tuple[Any, ...]) -> str:
    return f"= {values[0]!r}" if len(values) == 1 else f"in [{', '.join(repr(v) for v in values)}]"


@dataclass(frozen=True)
class Condition:
    """`child` is active only when `parent` is active and its value is (EQ, IN) or is not (NEQ) one of `values`."""

    child: str
    parent: str
    kind: str
    values: tuple[Any, ...]

    def holds(self, sampled: Mapping[str, Any]) -> bool:
        if self.parent not in sampled:
            return False
        return _among(sampled[self.parent], self.values) != (self.kind == "NEQ")

    def to_json(self) -> dict[str, Any]:
        if self.kind == "IN":
            return {"child": self.child, "parent": self.parent, "type": "IN", "values": list(self.values)}
        return {"child": self.child, "parent": self.parent, "type": self.kind, "value": self.values[0]}


@dataclass(frozen=True)
class Forbidden:
    """Forbids a configuration in which every clause (name, values) matches: the parameter is active and takes one of the values."""

    clauses: tuple[tuple[str, tuple[Any, ...]], ...]

    def matches(self, params: Mapping[str, Any]) -> bool:
        return all(name in params and _among(params[name], values) for name, values in self.clauses)

    def __str__(self) -> str:
        return " and ".join(f"{name} {_text(values)}" for name, values in self.clauses)

    def to_json(self) -> dict[str, Any]:
        parts = [
            {"name": n, "type": "EQUALS", "value": v[0]} if len(v) == 1 else {"name": n, "type": "IN", "values": list(v)}
            for n, v in self.clauses
        ]
        return parts[0] if len(parts) == 1 else {"type": "AND", "clauses": parts}


@dataclass(frozen=True)
class SearchSpace:
    """Parameters (spec dicts or fixed values, in file order), the conditions that switch children on, and forbidden clauses.

    Build it with `check_space`, `load_space` or `as_space`, which validate it.
    """

    params: dict[str, Any]
    conditions: tuple[Condition, ...] = ()
    forbidden: tuple[Forbidden, ...] = ()

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)

    @property
    def tunable(self) -> list[str]:
        return [name for name, spec in self.params.items() if isinstance(spec, dict)]

    @property
    def categorical(self) -> list[str]:
        return [name for name in self.tunable if self.params[name]["type"] == "categorical"]

    @cached_property
    def _conditions_of(self) -> dict[str, tuple[Condition, ...]]:
        out: dict[str, list[Condition]] = {}
        for c in self.conditions:
            out.setdefault(c.child, []).append(c)
        return {child: tuple(cs) for child, cs in out.items()}

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Every parameter, parents before their children, otherwise in file order."""
        index = {name: i for i, name in enumerate(self.params)}
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for parent in sorted({c.parent for c in self._conditions_of.get(name, ())}, key=index.__getitem__):
                visit(parent)
            order.append(name)

        for name in self.params:
            visit(name)
        return tuple(order)

    def is_active(self, name: str, sampled: Mapping[str, Any]) -> bool:
        """Whether `name` is sampled, given the values of its parents in `sampled`."""
        return all(c.holds(sampled) for c in self._conditions_of.get(name, ()))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one configuration through Optuna's define-by-run API: fixed values plus every active tunable parameter."""
        out: dict[str, Any] = {}
        for name in self.order:
            spec = self.params[name]
            if not isinstance(spec, dict):
                out[name] = spec
            elif self.is_active(name, out):
                out[name] = _suggest_one(trial, name, spec)
        return out

    def forbidden_by(self, params: Mapping[str, Any]) -> str | None:
        """The first forbidden clause a full configuration matches, as text, else None."""
        for f in self.forbidden:
            if f.matches(params):
                return str(f)
        return None

    def with_fixed(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's full configuration: the space's fixed values plus what Optuna sampled."""
        return {**{k: v for k, v in self.params.items() if not isinstance(v, dict)}, **sampled}

    def grid_size(self) -> int | None:
        """How many configurations a grid over the tunable parameters has (None: one is continuous), without listing them."""
        counts = [_count(self.params[name]) for name in self.tunable]
        return None if None in counts else math.prod(counts)

    def grid(self) -> dict[str, list[Any]]:
        """The finite values of every tunable parameter, for grid search."""
        for name in self.tunable:
            if _count(self.params[name]) is None:
                raise TuneflowError(f"Parameter {name!r} is continuous, so a grid cannot list its values.", "give it a step, or use another --sampler.")
        size = self.grid_size()
        if size is not None and size > _GRID_LIMIT:
            raise TuneflowError(
                f"The space's grid has {size:.3g} configurations, more than a grid search can list ({_GRID_LIMIT:,}).",
                "narrow the ranges or take larger steps, or use another --sampler.",
            )
        return {name: _finite_values(self.params[name]) for name in self.tunable}

    def to_json(self) -> Any:
        """The flat mapping when there are no conditions or forbiddens (study names hash it), else the sectioned form."""
        if not self.conditions and not self.forbidden:
            return self.params
        out: dict[str, Any] = {"parameters": self.params}
        if self.conditions:
            out["conditions"] = [c.to_json() for c in self.conditions]
        if self.forbidden:
            out["forbiddens"] = [f.to_json() for f in self.forbidden]
        return out

    def configurations(self) -> Iterator[dict[str, Any]]:
        """Every configuration the conditions allow (forbidden ones included) of a finite space, in order."""
        grid = self.grid()
        order = self.order

        def walk(i: int, partial: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(order):
                yield dict(partial)
                return
            name = order[i]
            if name not in grid:
                yield from walk(i + 1, {**partial, name: self.params[name]})
            elif not self.is_active(name, partial):
                yield from walk(i + 1, partial)
            else:
                for value in grid[name]:
                    yield from walk(i + 1, {**partial, name: value})

        yield from walk(0, {})


def _suggest_one(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log", False)), step=spec.get("step"))
    if spec["type"] == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)), step=int(spec.get("step", 1)))
    return trial.suggest_categorical(name, spec["choices"])


def _count(spec: dict[str, Any]) -> int | None:
    """How many values a tunable parameter takes (None: continuous), without listing them."""
    if spec["type"] == "categorical":
        return len(spec["choices"])
    if spec["type"] == "int":
        return (int(spec["high"]) - int(spec["low"])) // int(spec.get("step", 1)) + 1
    if not spec.get("step"):
        return None
    approx = (spec["high"] - spec["low"]) / spec["step"]  # finite: the checks bound low, high and step
    if approx > _GRID_LIMIT * 10:
        return int(approx) + 1
    low, step = Decimal(str(spec["low"])), Decimal(str(spec["step"]))
    return int((Decimal(str(spec["high"])) - low) // step) + 1


def _finite_values(spec: dict[str, Any]) -> list[Any] | None:
    """A tunable parameter's values when there are finitely many, else None (call it on a grid of a listable size)."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    if spec["type"] == "int":
        return list(range(int(spec["low"]), int(spec["high"]) + 1, int(spec.get("step", 1))))
    n = _count(spec)
    if n is None:
        return None
    low, step = Decimal(str(spec["low"])), Decimal(str(spec["step"]))
    return [float(low + k * step) for k in range(n)]


def _read_yaml(path: str, what: str, option: str) -> Any:
    """The file's one document: JSON for a .json file, else YAML (a superset, also reading 1e-3 as a
    number). The parsers get bytes: UTF-8, or UTF-16 after a BOM; another encoding is refused."""
    try:
        fs, p = filesystem(path)
        if fs.isdir(p):
            raise IsADirectoryError(path)
        with fs.open(p, "rb") as f:
            raw = f.read()
    except FileNotFoundError as exc:
        raise TuneflowError(f"{what} file {path} does not exist.", f"pass {option} with an existing YAML/JSON file.") from exc
    except (OSError, ValueError) as exc:
        raise TuneflowError(f"Cannot read {what.lower()} file {path}: {_one_line(exc)}.", f"pass {option} with a readable YAML/JSON file.") from exc
    try:
        return json.loads(raw) if path.lower().endswith(".json") else yamltext.load(raw)
    except yaml.YAMLError as exc:
        raise TuneflowError(f"{what} file {path} is not valid YAML/JSON: {_yaml_reason(exc)}.", "fix its syntax.") from exc
    except ValueError as exc:  # json.JSONDecodeError, bytes that are not UTF-8/16/32, a number of more than 4300 digits
        raise TuneflowError(f"{what} file {path} is not valid YAML/JSON: {_one_line(exc)}.", "fix its syntax.") from exc
    except RecursionError as exc:
        raise TuneflowError(f"{what} file {path} is nested too deeply to read.", "write it with a few levels of nesting, as data/search_space.yaml does.") from exc


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """What the parser found and where (its message also quotes the file's lines)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return _one_line(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return _one_line(Exception(f"{context + ', ' if context else ''}{problem}{where}"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def load_space(path: str | None) -> SearchSpace:
    """The default space, or the one in a YAML/JSON file (checked before any work starts)."""
    if path is None:
        return SearchSpace(dict(DEFAULT_SPACE))
    return check_space(_read_yaml(path, "Search-space", "--space"), path)


def load_configs(path: str | None, space: SearchSpace | None = None) -> list[dict[str, Any]]:
    """Configurations to try first (a YAML/JSON list of parameter mappings), e.g. known good ones.

    Each value is a plain finite value; with `space`, each name is one of its parameters and each
    value one the parameter can take (Optuna would fail the trial on a categorical value outside
    the choices, and take any other out-of-range value as it is)."""
    if path is None:
        return []
    configs = _read_yaml(path, "Enqueue", "--enqueue")
    if not isinstance(configs, list) or not all(isinstance(c, dict) and c for c in configs):
        raise TuneflowError(f"{path} must hold a list of parameter mappings.", _FIX_ENQUEUE)
    for i, config in enumerate(configs, 1):
        for name, value in config.items():
            _check_config_value(name, value, space, f"{path}: configuration {i}")
    return configs


_FIX_ENQUEUE = "write e.g. [{max_depth: 6, learning_rate: 0.1}]."


def _check_config_value(name: Any, value: Any, space: SearchSpace | None, where: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TuneflowError(f"{where} has parameter name {name!r}, not an XGBoost parameter name.", _FIX_ENQUEUE)
    if not isinstance(value, _SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
        raise TuneflowError(f"{where} sets {name!r} to {value!r}, not a finite number, a text or a boolean.", _FIX_ENQUEUE)
    if space is None:
        return
    if name not in space.params:
        close = difflib.get_close_matches(name, list(space.params), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TuneflowError(f"{where} sets {name!r}, which is not a parameter of the search space ({', '.join(space.params)}).", f"{hint}name the space's parameters.")
    spec = space.params[name]
    if not isinstance(spec, dict):
        if not _same(value, spec):
            raise TuneflowError(f"{where} sets {name!r} to {value!r}, but the search space fixes it at {spec!r}.", f"drop {name!r} from the configuration, or make it tunable.")
        return
    if _outside(spec, (value,)) is not None:
        raise TuneflowError(f"{where} sets {name!r} to {value!r}, outside {_domain(spec)}.", f"give {name!r} a value the search space allows.")


def as_space(space: SearchSpace | Mapping[str, Any]) -> SearchSpace:
    """A `SearchSpace` as is; a mapping (flat or sectioned) checked into one."""
    return space if isinstance(space, SearchSpace) else check_space(space)


def check_space(space: Any, source: str = "search space") -> SearchSpace:
    """Validate a space definition (flat or sectioned mapping, or a SearchSpace); raise one clear error for the first bad entry."""
    if isinstance(space, SearchSpace):
        return _checked(space.params, space.conditions, space.forbidden, source)
    if isinstance(space, Mapping) and _SECTIONS & space.keys():
        extra = sorted(str(k) for k in space.keys() - _SECTIONS)
        if extra:
            raise TuneflowError(f"{source} has unknown sections {extra}.", "a sectioned space has only 'parameters', 'conditions' and 'forbiddens'; put parameters under 'parameters'.")
        params = space.get("parameters")
        if not isinstance(params, dict) or not params:
            raise TuneflowError(f"{source} must give a non-empty 'parameters' mapping.", _FIX)
        conditions = _parse_conditions(space.get("conditions"), source)
        forbidden = _parse_forbiddens(space.get("forbiddens"), source)
        return _checked(params, conditions, forbidden, source)
    return _checked(dict(space) if isinstance(space, Mapping) and not isinstance(space, dict) else space, (), (), source)


def _checked(params: Any, conditions: tuple[Condition, ...], forbidden: tuple[Forbidden, ...], source: str) -> SearchSpace:
    _check_params(params, source)
    for c in conditions:
        _check_condition(c, params, source)
    _check_acyclic(conditions, source)
    for f in forbidden:
        _check_forbidden(f, params, source)
    space = SearchSpace(params, tuple(conditions), tuple(forbidden))
    _check_not_all_forbidden(space, source)
    return space


def _check_params(space: Any, source: str) -> None:
    if not isinstance(space, dict) or not space:
        raise TuneflowError(f"{source} must be a non-empty mapping of parameter names.", _FIX)
    for name, spec in space.items():
        if not isinstance(name, str):
            raise TuneflowError(f"{source}: parameter name {name!r} is not a string.", _FIX)
        if not _NAME.fullmatch(name):  # XGBoost's names; Optuna, MLflow and the study name take them as they are
            raise TuneflowError(f"{source}: parameter name {name!r} is not an XGBoost parameter name.", "use XGBoost's names (letters, digits and _), e.g. max_depth.")
        if not isinstance(spec, dict):
            if isinstance(spec, float) and not math.isfinite(spec):
                raise TuneflowError(f"{source}: parameter {name!r} is fixed at {spec!r}.", "give it a finite number, or leave it out.")
            if isinstance(spec, _SCALARS):
                continue
            raise TuneflowError(f"{source}: parameter {name!r} has an unusable value {spec!r}.", _FIX)
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in _TYPES:
            raise TuneflowError(f"{source}: parameter {name!r} has type {kind!r}.", _FIX)
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
        extra = set(spec) - allowed
        if extra:
            raise TuneflowError(f"{source}: parameter {name!r} has unknown keys {sorted(map(str, extra))}.", _FIX)
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TuneflowError(f"{source}: categorical parameter {name!r} needs a non-empty 'choices' list.", _FIX)
            bad = [c for c in choices if not isinstance(c, _SCALARS)]
            if bad:
                raise TuneflowError(f"{source}: categorical parameter {name!r} has choice {bad[0]!r}, not a string, number or boolean.", "list plain values, e.g. choices: [gbtree, dart].")
            infinite = [c for c in choices if isinstance(c, float) and not math.isfinite(c)]
            if infinite:
                raise TuneflowError(f"{source}: categorical parameter {name!r} has choice {infinite[0]!r}.", "list finite numbers, texts or booleans.")
            twice = [c for i, c in enumerate(choices) if c in choices[:i]]  # ==, as Optuna compares them
            if twice:
                raise TuneflowError(
                    f"{source}: categorical parameter {name!r} lists {twice[0]!r} twice (Optuna takes true for 1 and 1.0 for 1).",
                    "list each choice once.",
                )
            continue
        _check_numeric(name, kind, spec, source)


def _check_numeric(name: str, kind: str, spec: dict[str, Any], source: str) -> None:
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    if not _finite(low) or not _finite(high) or low > high:
        raise TuneflowError(f"{source}: parameter {name!r} needs finite numbers low <= high (got {low!r}, {high!r}).", _FIX)
    if not math.isfinite(float(high) - float(low)) or (kind == "int" and max(abs(low), abs(high)) > _INT_LIMIT):
        raise TuneflowError(f"{source}: parameter {name!r} has a range [{low!r}, {high!r}] too wide to sample.", "give bounds an XGBoost parameter can take.")
    if "log" in spec and not isinstance(spec["log"], bool):
        raise TuneflowError(f"{source}: parameter {name!r} has log {spec['log']!r}.", "write log: true or log: false.")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise TuneflowError(f"{source}: int parameter {name!r} needs whole-number low and high (got {low!r}, {high!r}).", "use whole numbers, or type: float.")
    if spec.get("log") and low <= 0:
        raise TuneflowError(f"{source}: log-scaled parameter {name!r} needs low > 0.", _FIX)
    if "step" in spec:
        if not _finite(step) or step <= 0 or (kind == "int" and step != int(step)):
            raise TuneflowError(f"{source}: parameter {name!r} has step {step!r}.", "use a positive step (a whole number for type: int).")
        if kind == "float" and (high - low) / step > _GRID_LIMIT * 10:
            raise TuneflowError(f"{source}: parameter {name!r} has step {step!r}, too small for its range [{low!r}, {high!r}].", "take a larger step, or drop it.")
        if spec.get("log") and (kind == "float" or step != 1):
            raise TuneflowError(f"{source}: parameter {name!r} is log-scaled and has step {step!r}; Optuna cannot combine them.", "drop the step or log: true.")


def _finite(value: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is not."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _keys(entry: dict[str, Any], allowed: set[str], what: str, fix: str) -> None:
    extra = set(entry) - allowed
    if extra:
        raise TuneflowError(f"{what} has unknown keys {sorted(map(str, extra))}.", fix)


def _values(entry: dict[str, Any], kind: str, what: str, fix: str) -> tuple[Any, ...]:
    """`value` (one) or `values` (a non-empty list, for IN) of a condition or clause."""
    if kind == "IN":
        values = entry.get("values")
        if not isinstance(values, list) or not values:
            raise TuneflowError(f"{what} needs a non-empty 'values' list.", fix)
        return tuple(values)
    if "value" not in entry:
        raise TuneflowError(f"{what} needs a 'value'.", fix)
    return (entry["value"],)


def _entries(raw: Any, section: str, source: str, fix: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TuneflowError(f"{source}: {section!r} must be a list.", fix)
    return raw


def _parse_conditions(raw: Any, source: str) -> tuple[Condition, ...]:
    out: list[Condition] = []
    for entry in _entries(raw, "conditions", source, _FIX_CONDITION):
        out.extend(_parse_condition(entry, source, None))
    return tuple(out)


def _parse_condition(entry: Any, source: str, within: str | None) -> list[Condition]:
    if not isinstance(entry, dict):
        raise TuneflowError(f"{source}: condition {entry!r} is not a mapping.", _FIX_CONDITION)
    child, kind = entry.get("child"), entry.get("type")
    what = f"{source}: condition on {child!r}"
    if not isinstance(child, str):
        raise TuneflowError(f"{source}: condition {entry!r} needs a 'child' parameter name.", _FIX_CONDITION)
    if within is not None and child != within:
        raise TuneflowError(f"{source}: AND condition on {within!r} holds a condition on {child!r}.", "every condition inside an AND names the same child.")
    if kind == "AND":
        _keys(entry, {"child", "type", "conditions"}, what, _FIX_CONDITION)
        parts = entry.get("conditions")
        if not isinstance(parts, list) or not parts:
            raise TuneflowError(f"{what} (AND) needs a non-empty 'conditions' list.", _FIX_CONDITION)
        return [c for part in parts for c in _parse_condition(part, source, child)]
    if not isinstance(kind, str) or kind not in _CONDITION_TYPES:
        hint = " (an OR over one parent's values is an IN)" if kind == "OR" else ""
        raise TuneflowError(f"{what} has type {kind!r}, not one of EQ, NEQ, IN, AND{hint}.", _FIX_CONDITION)
    values = _values(entry, kind, what, _FIX_CONDITION)
    _keys(entry, {"child", "parent", "type", "values" if kind == "IN" else "value"}, what, _FIX_CONDITION)
    parent = entry.get("parent")
    if not isinstance(parent, str):
        raise TuneflowError(f"{what} needs a 'parent' parameter name.", _FIX_CONDITION)
    return [Condition(child, parent, kind, values)]


def _parse_forbiddens(raw: Any, source: str) -> tuple[Forbidden, ...]:
    return tuple(Forbidden(tuple(_parse_clauses(entry, source))) for entry in _entries(raw, "forbiddens", source, _FIX_FORBIDDEN))


def _parse_clauses(entry: Any, source: str) -> list[tuple[str, tuple[Any, ...]]]:
    if not isinstance(entry, dict):
        raise TuneflowError(f"{source}: forbidden clause {entry!r} is not a mapping.", _FIX_FORBIDDEN)
    kind, name = entry.get("type"), entry.get("name")
    if kind == "AND":
        _keys(entry, {"type", "clauses", "name"}, f"{source}: forbidden AND clause", _FIX_FORBIDDEN)
        parts = entry.get("clauses")
        if not isinstance(parts, list) or not parts:
            raise TuneflowError(f"{source}: forbidden AND clause {entry!r} needs a non-empty 'clauses' list.", _FIX_FORBIDDEN)
        clauses = [c for part in parts for c in _parse_clauses(part, source)]
        names = [n for n, _ in clauses]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise TuneflowError(f"{source}: forbidden AND clause names {twice!r} twice.", f"give {twice!r} one clause (type: IN for several values).")
        return clauses
    what = f"{source}: forbidden clause on {name!r}"
    if not isinstance(name, str):
        raise TuneflowError(f"{source}: forbidden clause {entry!r} needs a 'name' parameter.", _FIX_FORBIDDEN)
    if not isinstance(kind, str) or kind not in _FORBIDDEN_TYPES:
        raise TuneflowError(f"{what} has type {kind!r}, not one of EQUALS, IN, AND.", _FIX_FORBIDDEN)
    values = _values(entry, kind, what, _FIX_FORBIDDEN)
    _keys(entry, {"name", "type", "values" if kind == "IN" else "value"}, what, _FIX_FORBIDDEN)
    return [(name, values)]


def _outside(spec: dict[str, Any], values: tuple[Any, ...]) -> tuple[Any] | None:
    """The first of `values` the parameter can never take (as a 1-tuple), else None."""
    for v in values:
        if spec["type"] == "categorical":
            ok = _among(v, spec["choices"])
        elif spec["type"] == "int":
            step = int(spec.get("step", 1))
            ok = isinstance(v, int) and not isinstance(v, bool) and spec["low"] <= v <= spec["high"] and (v - int(spec["low"])) % step == 0
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and spec["low"] <= v <= spec["high"]
        if not ok:
            return (v,)
    return None


def _domain(spec: dict[str, Any]) -> str:
    if spec["type"] == "categorical":
        return f"its choices {spec['choices']!r}"
    step = f" in steps of {spec['step']}" if spec.get("step") else ""
    return f"its range [{spec['low']}, {spec['high']}]{step}"


def _check_condition(c: Condition, params: dict[str, Any], source: str) -> None:
    what = f"{source}: condition on {c.child!r}"
    for role, name in (("child", c.child), ("parent", c.parent)):
        if name not in params:
            raise TuneflowError(f"{what} names {role} {name!r}, which is not a parameter of the space.", f"add {name!r} to the parameters or fix the condition's {role}.")
        if not isinstance(params[name], dict):
            raise TuneflowError(
                f"{what}: {role} {name!r} is a fixed value, so no condition can depend on it or switch it off.",
                f"make {name!r} a tunable {{type: ...}} entry, or drop the condition.",
            )
    parent = params[c.parent]
    if parent["type"] == "float":
        raise TuneflowError(f"{what}: parent {c.parent!r} is a float; a condition's parent must be categorical or int.", f"make {c.parent!r} categorical (or int), or drop the condition.")
    bad = _outside(parent, c.values)
    if bad is not None:
        raise TuneflowError(f"{what}: parent {c.parent!r} never takes {bad[0]!r}, which is outside {_domain(parent)}.", f"use values {c.parent!r} can take.")


def _check_acyclic(conditions: tuple[Condition, ...], source: str) -> None:
    parents: dict[str, list[str]] = {}
    for c in conditions:
        parents.setdefault(c.child, []).append(c.parent)
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " <- ".join([*path[path.index(name):], name])
            raise TuneflowError(f"{source}: parameter {name!r} is its own ancestor through conditions ({cycle}).", f"remove one of the conditions in the cycle of {name!r}.")
        if name in done:
            return
        for p in parents.get(name, ()):
            visit(p, [*path, name])
        done.add(name)

    for child in parents:
        visit(child, [])


def _check_forbidden(f: Forbidden, params: dict[str, Any], source: str) -> None:
    for name, values in f.clauses:
        what = f"{source}: forbidden clause on {name!r}"
        if name not in params:
            raise TuneflowError(f"{what}: {name!r} is not a parameter of the space.", f"add {name!r} to the parameters or fix the clause's name.")
        spec = params[name]
        if not isinstance(spec, dict):
            raise TuneflowError(f"{what}: {name!r} is a fixed value, so the clause would forbid all or nothing.", f"make {name!r} tunable, or drop the clause.")
        bad = _outside(spec, values)
        if bad is not None:
            raise TuneflowError(f"{what}: {bad[0]!r} is outside {_domain(spec)}.", f"forbid values {name!r} can take.")


def _check_not_all_forbidden(space: SearchSpace, source: str) -> None:
    """On a small finite space, refuse forbiddens that leave no configuration to try."""
    size = space.grid_size() if space.forbidden else None
    if size is None or size > _ENUMERATE_LIMIT:
        return
    if all(space.forbidden_by(config) for config in space.configurations()):
        clauses = "; ".join(str(f) for f in space.forbidden)
        raise TuneflowError(f"{source}: the forbidden clauses ({clauses}) forbid every configuration of the space.", "drop or narrow a forbidden clause.")


def suggest(trial: optuna.Trial, space: SearchSpace | Mapping[str, Any]) -> dict[str, Any]:
    """Sample one configuration from the space through Optuna's trial API."""
    return as_space(space).suggest(trial)


def with_fixed(space: SearchSpace | Mapping[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's full configuration: the space's fixed values plus what Optuna sampled."""
    return as_space(space).with_fixed(sampled)
