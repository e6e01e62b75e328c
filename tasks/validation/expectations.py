"""The user's expectations file (YAML or JSON, local or any fsspec URI): reading it and checking it."""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

import yaml

from tasks import yamltext
from tasks.errors import TuneflowError
from tasks.objectstore import filesystem
from tasks.validation.catalog import build_expectation, expectation_class
from tasks.validation.values import first_line, is_int, is_number

TOP_KEYS = ("min_rows", "columns", "expectations")
COLUMN_RULES = ("min", "max", "allowed", "not_null", "kind", "missing_values")
KINDS = ("numeric", "categorical")
RAW_KEYS = ("type", "kwargs")
FIX_FORMAT = "see data/expectations.yaml for the format (min_rows, columns, expectations)."


def load_expectations(path: str | None) -> dict[str, Any]:
    """Read and check a user expectations file (YAML or JSON, local or any fsspec URI); None gives {}."""
    if path is None:
        return {}
    try:
        fs, fpath = filesystem(path)
        if not fs.exists(fpath) or fs.isdir(fpath):
            raise TuneflowError(
                f"Expectations file {path} does not exist.",
                "pass the path or URI of an existing YAML/JSON expectations file, or leave it out to run only "
                "the built-in checks.",
            )
        with fs.open(fpath, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except TuneflowError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TuneflowError(f"Cannot read expectations file {path}: {first_line(exc)}.", "check the path and its permissions.") from exc
    try:
        data = json.loads(text) if path.lower().endswith(".json") else yamltext.load(text)
    except RecursionError as exc:
        raise TuneflowError(f"Expectations file {path} is nested too deeply to read.", FIX_FORMAT) from exc
    except json.JSONDecodeError as exc:
        raise TuneflowError(f"Expectations file {path} is not valid JSON: {exc}.", f"fix the syntax; {FIX_FORMAT}") from exc
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = " ".join((getattr(exc, "problem", None) or first_line(exc)).split())
        raise TuneflowError(f"Expectations file {path} is not valid YAML{where}: {reason}.", f"fix the syntax; {FIX_FORMAT}") from exc
    except ValueError as exc:  # e.g. a number of more than 4300 digits
        raise TuneflowError(f"Expectations file {path} cannot be read: {first_line(exc)}.", f"fix the value; {FIX_FORMAT}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TuneflowError(f"Expectations file {path} holds a {type(data).__name__}, not a mapping.", FIX_FORMAT)
    return check_expectations(data, path)


def check_expectations(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The file's content, checked: known keys, typed rules, raw expectations that GX can build."""
    _reject_unknown(data.keys(), TOP_KEYS, f"{path}: unknown top-level key")
    out: dict[str, Any] = {}
    if "min_rows" in data:
        min_rows = data["min_rows"]
        if not is_int(min_rows) or min_rows < 0:
            raise TuneflowError(f"{path}: min_rows must be a whole number >= 0, not {min_rows!r}.", FIX_FORMAT)
        out["min_rows"] = int(min_rows)
    columns = data.get("columns") or {}
    if not isinstance(columns, dict):
        raise TuneflowError(f"{path}: 'columns' must map column names to rules, not {type(columns).__name__}.", FIX_FORMAT)
    out_columns = {str(name): _check_rules(rules, f"{path}: columns.{_shown(name)}") for name, rules in columns.items()}
    if out_columns:
        out["columns"] = out_columns
    raw = data.get("expectations") or []
    if not isinstance(raw, list):
        raise TuneflowError(f"{path}: 'expectations' must be a list of {{type, kwargs}} entries.", FIX_FORMAT)
    out_raw = [_check_raw(entry, f"{path}: expectations[{i}]") for i, entry in enumerate(raw)]
    if out_raw:
        out["expectations"] = out_raw
    return out


def _check_rules(rules: Any, where: str) -> dict[str, Any]:
    if not isinstance(rules, dict):
        raise TuneflowError(f"{where} must be a mapping of rules ({', '.join(COLUMN_RULES)}).", FIX_FORMAT)
    _reject_unknown(rules.keys(), COLUMN_RULES, f"{where}: unknown rule")
    for bound in ("min", "max"):
        if bound in rules and not is_number(rules[bound]):
            raise TuneflowError(f"{where}.{bound} must be a number, not {rules[bound]!r}.", FIX_FORMAT)
        if bound in rules and not _finite(rules[bound]):
            raise TuneflowError(f"{where}.{bound} must be a finite number, not {rules[bound]!r}.", f"give a number, or leave {bound} out for no bound.")
    if "min" in rules and "max" in rules and rules["min"] > rules["max"]:
        raise TuneflowError(f"{where}: min {rules['min']} is greater than max {rules['max']}.", "swap them.")
    if "allowed" in rules:
        allowed = rules["allowed"]
        if not isinstance(allowed, list) or not allowed or any(isinstance(v, (list, dict)) for v in allowed):
            raise TuneflowError(f"{where}.allowed must be a non-empty list of values.", FIX_FORMAT)
    if "not_null" in rules and not isinstance(rules["not_null"], bool):
        raise TuneflowError(f"{where}.not_null must be true or false, not {rules['not_null']!r}.", FIX_FORMAT)
    out = dict(rules)
    if "kind" in rules and rules["kind"] not in KINDS:
        raise TuneflowError(f"{where}.kind must be {' or '.join(KINDS)}, not {rules['kind']!r}.", FIX_FORMAT)
    if "missing_values" in rules:
        values = rules["missing_values"]
        if not isinstance(values, list) or not values or any(v is None or isinstance(v, (bool, list, dict)) for v in values):
            raise TuneflowError(f"{where}.missing_values must be a non-empty list of texts or numbers (like ['n/a', '?', -999]).", FIX_FORMAT)
        out["missing_values"] = [str(v).strip() for v in values]  # compared as text, and as numbers (tasks/data/inputs.missing_mask)
    return out


def _check_raw(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or "type" not in entry:
        raise TuneflowError(f"{where} must be a mapping with a 'type' (and optional 'kwargs').", FIX_FORMAT)
    _reject_unknown(entry.keys(), RAW_KEYS, f"{where}: unknown key")
    kwargs = entry.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise TuneflowError(f"{where}.kwargs must be a mapping of keyword arguments.", FIX_FORMAT)
    etype = entry["type"]
    if not isinstance(etype, str) or not etype.isidentifier():
        raise TuneflowError(f"{where}.type {etype!r} is not an expectation name.", "use a Great Expectations 1.x expectation name in snake_case, e.g. expect_column_values_to_be_between.")
    expectation_class(etype, where)
    build_expectation(etype, kwargs, where)  # checks the kwargs now, not on a worker
    return {"type": etype, "kwargs": kwargs}


def _reject_unknown(keys: Any, known: tuple[str, ...], what: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise TuneflowError(f"{what} {_shown(key)!r} (known: {', '.join(known)}).", f"{hint}{FIX_FORMAT}")


def _shown(name: Any) -> str:
    """A user's key as text in a one-line message: as it is, or escaped when it holds control characters."""
    text = str(name)
    return text if text.isprintable() else repr(text)[1:-1]


def _finite(value: Any) -> bool:
    if not is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
