"""Search spaces: a default suited to XGBoost, or a YAML/JSON file of float/int/categorical params.

File format (one entry per XGBoost parameter):

    learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
    max_depth: {type: int, low: 3, high: 10}
    max_bin: {type: categorical, choices: [128, 256]}
    subsample: 0.8            # a bare value fixes the parameter
"""

from __future__ import annotations

from typing import Any

import optuna
import yaml

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


def _read_yaml(path: str, what: str, option: str) -> Any:
    try:
        fs, p = filesystem(path)
        with fs.open(p, "r") as f:
            return yaml.safe_load(f)
    except FileNotFoundError as exc:
        raise TuneflowError(f"{what} file {path} does not exist.", f"pass {option} with an existing YAML/JSON file.") from exc
    except yaml.YAMLError as exc:
        raise TuneflowError(f"{what} file {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}.", "fix its syntax.") from exc


def load_space(path: str | None) -> dict[str, Any]:
    """The default space, or the one in a YAML/JSON file (checked before any work starts)."""
    if path is None:
        return dict(DEFAULT_SPACE)
    return check_space(_read_yaml(path, "Search-space", "--space"), path)


def load_configs(path: str | None) -> list[dict[str, Any]]:
    """Configurations to try first (a YAML/JSON list of parameter mappings), e.g. known good ones."""
    if path is None:
        return []
    configs = _read_yaml(path, "Enqueue", "--enqueue")
    if not isinstance(configs, list) or not all(isinstance(c, dict) and c for c in configs):
        raise TuneflowError(f"{path} must hold a list of parameter mappings.", "write e.g. [{max_depth: 6, learning_rate: 0.1}].")
    return configs


def check_space(space: Any, source: str = "search space") -> dict[str, Any]:
    """Validate a space definition; raise one clear error for the first bad entry."""
    fix = "see data/search_space.yaml for the format: NAME: {type: float|int|categorical, low, high[, log]} or {type: categorical, choices: [...]}."
    if not isinstance(space, dict) or not space:
        raise TuneflowError(f"{source} must be a non-empty mapping of parameter names.", fix)
    for name, spec in space.items():
        if not isinstance(spec, dict):
            if isinstance(spec, (int, float, str, bool)):
                continue  # a fixed value
            raise TuneflowError(f"{source}: parameter '{name}' has an unusable value {spec!r}.", fix)
        kind = spec.get("type")
        if kind not in _TYPES:
            raise TuneflowError(f"{source}: parameter '{name}' has type {kind!r}.", fix)
        if kind == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise TuneflowError(f"{source}: categorical parameter '{name}' needs a non-empty 'choices' list.", fix)
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low > high:
            raise TuneflowError(f"{source}: parameter '{name}' needs numeric low <= high (got {low!r}, {high!r}).", fix)
        if spec.get("log") and low <= 0:
            raise TuneflowError(f"{source}: log-scaled parameter '{name}' needs low > 0.", fix)
        extra = set(spec) - {"type", "low", "high", "log", "step"}
        if extra:
            raise TuneflowError(f"{source}: parameter '{name}' has unknown keys {sorted(extra)}.", fix)
    return space


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """Sample one configuration from the space through Optuna's trial API."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            params[name] = spec
        elif spec["type"] == "float":
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log", False)), step=spec.get("step"))
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)), step=int(spec.get("step", 1)))
        else:
            params[name] = trial.suggest_categorical(name, spec["choices"])
    return params


def with_fixed(space: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's full configuration: the space's fixed values plus what Optuna sampled."""
    return {**{k: v for k, v in space.items() if not isinstance(v, dict)}, **sampled}
