"""Data arrival on a self-hosted Prefect server: the sensor flow and the flow an arrival starts.

    watch-landing  (scheduled, e.g. every minute; or `tuneflow watch` in a loop) lists each landing
                   zone, emits `tuneflow.data.landed` once per complete arrival, with an event id
                   derived from the arrival's content, so the same data never triggers twice.
    tune-landed    (the `on-new-data` deployment, started by that event) tunes the zone's current
                   data as the zone's dataset, so every arrival competes for the zone model's champion
                   and warm-starts from the previous version's study.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from tasks.arrival.listing import list_zone
from tasks.arrival.sensor import Arrival, Check, check_zone, landed_event, load_state, save_state
from tasks.arrival.zones import LandingZone, find_zone, load_zones
from tasks.names import check_name
from tasks.objectstore import storage_options_for
from tasks.policy import check_flow_inputs, check_location, check_text
from tasks.settings import get_settings


def look_once(zones: list[LandingZone], zones_file: str | None, store: str | None = None, now: float | None = None) -> list[tuple[LandingZone, Check]]:
    """One look at every zone; emits a landed event for each complete arrival. No Prefect run context needed."""
    root = store or get_settings().resolved_store()
    options = storage_options_for(root)
    results = []
    for zone in zones:
        state = load_state(root, zone, options)
        check = check_zone(zone, list_zone(zone, storage_options_for(zone.uri)), state, time.time() if now is None else now)
        if check.arrival is not None:
            emit(check.arrival, zones_file)
        save_state(root, zone, state, options)  # after the emit: a crash in between re-emits the same id, which the server drops
        results.append((zone, check))
    return results


def emit(arrival: Arrival, zones_file: str | None) -> None:
    from prefect.events import emit_event

    emit_event(**landed_event(arrival, zones_file))


@flow(name="watch-landing", log_prints=True)
def watch_landing(zones_file: str = "deployments/landing.yaml", store: str | None = None) -> list[dict[str, Any]]:
    """Look at every landing zone once and emit `tuneflow.data.landed` for each complete arrival."""
    log = get_run_logger()
    check_flow_inputs(zones_file=zones_file, store=store)  # the input policy (tasks/policy.py)
    zones = load_zones(zones_file)
    for zone in zones:  # what the sensor lists; a run on it checks its own parameters again
        check_location(zone.uri, f"uri of zone {zone.name}")
    outcomes = []
    for zone, check in look_once(zones, zones_file, store):
        log.info("zone %s (%s): %s", zone.name, zone.uri, check.status)
        outcomes.append({"zone": zone.name, "status": check.status, "event_id": check.arrival.event_id if check.arrival else None})
    return outcomes


@flow(name="tune-landed", log_prints=True)
def tune_landed(zone: str, data: str | None = None, target: str | None = None, zones_file: str | None = None, arrival: str | None = None) -> dict[str, Any]:
    """Tune the landing zone's data as its own dataset (the zone's model competes for champion).

    Reads the zone from `zones_file` (as the sensor did); an event sent by hand without a zones
    file names the data and target itself."""
    from flows.tune_xgboost import tune_xgboost
    from tasks.errors import TuneflowError

    log = get_run_logger()
    # the input policy (tasks/policy.py): these parameters come from an event
    check_name(zone, "zone name")
    for value, what, longest in ((target, "target", 256), (arrival, "arrival", 64)):
        if value is not None:
            check_text(value, what, longest)
    check_flow_inputs(data=data, zones_file=zones_file or None)
    if zones_file:
        the_zone = find_zone(load_zones(zones_file), zone)
    elif data and target:
        the_zone = LandingZone(check_name(zone, "zone name"), data, target)
    else:
        raise TuneflowError(f"The landed event for zone {zone!r} names no zones file and no data/target.", "emit it with deployments/emit_landed.py or tuneflow watch.")
    log.info("arrival %s in zone %s: tuning %s for %s", arrival or "?", the_zone.name, the_zone.uri, the_zone.target)
    return tune_xgboost(**the_zone.flow_parameters())
