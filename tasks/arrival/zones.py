"""Landing zones: the prefixes a sensor watches, each one dataset and one registered model.

A zones file (YAML) lists them:

    zones:
      - name: churn                      # dataset name -> model tuneflow-churn
        uri: s3://landing/churn/         # folder or prefix; everything under it is the dataset
        target: churned
        marker: _SUCCESS                 # complete once this file exists (Spark's convention) ...
        settle_seconds: 120              # ... or once the listing has not changed for this long
        parameters: {row_key: customer_id, n_trials: 20}   # more flow parameters
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import TuneflowError
from tasks.names import check_name

DEFAULT_SETTLE_SECONDS = 120.0
# Flow parameters a zone may set; data, target and the dataset name come from the zone itself.
ZONE_PARAMETERS = frozenset({
    "task", "metric", "n_trials", "timeout", "parallelism", "space", "expectations", "row_key", "max_rounds",
    "early_stopping_rounds", "pruner", "fidelity", "sampler", "objectives", "within", "stop_at", "patience", "min_delta",
    "max_cost", "warm_start", "seed", "model_name", "store", "storage", "dask_address", "device", "placement",
})
_KEYS = {"name", "uri", "target", "marker", "settle_seconds", "parameters"}


@dataclass(frozen=True)
class LandingZone:
    """One watched prefix: its arrivals are versions of one dataset, competing for one model's champion."""

    name: str
    uri: str
    target: str
    marker: str | None = "_SUCCESS"
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    parameters: dict[str, Any] = field(default_factory=dict)

    def flow_parameters(self) -> dict[str, Any]:
        """The tune-xgboost parameters of a run on this zone's current data."""
        return {**self.parameters, "data": self.uri, "target": self.target, "dataset_name": self.name}


def load_zones(path: str) -> list[LandingZone]:
    """The zones of a YAML/JSON file, checked: unique names, known keys, a URI and a target each."""
    file = Path(path)
    if not file.is_file():
        raise TuneflowError(f"Zones file {path} does not exist.", "pass --zones with a YAML file listing the landing zones (see deployments/landing.yaml).")
    try:
        doc = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TuneflowError(f"Zones file {path} is not valid YAML: {str(exc).splitlines()[0]}.", "fix the file's syntax.") from None
    entries = doc.get("zones") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise TuneflowError(f"Zones file {path} has no 'zones' list.", "write 'zones:' followed by a list of {name, uri, target}.")
    zones = [_zone(entry, i, path) for i, entry in enumerate(entries)]
    names = [z.name for z in zones]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TuneflowError(f"Zones file {path} names zone(s) {', '.join(dup)} twice.", "give every zone its own name.")
    return zones


def find_zone(zones: list[LandingZone], name: str) -> LandingZone:
    """The zone called `name`, or one error naming the ones there are."""
    for zone in zones:
        if zone.name == name:
            return zone
    raise TuneflowError(f"No landing zone named {name!r}.", f"use one of: {', '.join(z.name for z in zones)}.")


def _zone(entry: Any, index: int, path: str) -> LandingZone:
    where = f"zone #{index + 1} in {path}"
    if not isinstance(entry, dict):
        raise TuneflowError(f"{where} is not a mapping.", "write each zone as {name: ..., uri: ..., target: ...}.")
    unknown = set(entry) - _KEYS
    if unknown:
        raise TuneflowError(f"{where} has unknown key(s) {', '.join(sorted(map(str, unknown)))}.", f"use only {', '.join(sorted(_KEYS))}.")
    for key in ("name", "uri", "target"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise TuneflowError(f"{where} has no {key}.", f"give the zone a '{key}' string.")
    name = check_name(entry["name"], f"zone name in {where}")
    marker = entry.get("marker", "_SUCCESS")
    if marker is not None and (not isinstance(marker, str) or "/" in marker or not marker):
        raise TuneflowError(f"{where}: bad marker {marker!r}.", "give a file name such as _SUCCESS, or marker: null to rely on the settle time.")
    settle = entry.get("settle_seconds", DEFAULT_SETTLE_SECONDS)
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or settle < 0:
        raise TuneflowError(f"{where}: bad settle_seconds {settle!r}.", "give a number of seconds >= 0.")
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise TuneflowError(f"{where}: parameters is not a mapping.", "write parameters as {row_key: id, n_trials: 20}.")
    bad = set(params) - ZONE_PARAMETERS
    if bad:
        raise TuneflowError(f"{where}: parameter(s) {', '.join(sorted(map(str, bad)))} cannot be set per zone.",
                            f"use flow parameters among: {', '.join(sorted(ZONE_PARAMETERS))}.")
    return LandingZone(name, entry["uri"].strip(), entry["target"], marker, float(settle), dict(params))
