"""The sensor's decision for one zone: nothing new, still landing, or landed (emit once).

Plain functions over a listing and a small state record, so the scheduled sensor flow, the
`tuneflow watch` loop and the bucket-notification relay decide the same way.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks import objectstore
from tasks.arrival.listing import Listing, identity
from tasks.arrival.zones import LandingZone

LANDED_EVENT = "tuneflow.data.landed"
# Event ids are uuid5(this, zone + content identity): the same data always gets the same id.
EVENT_NAMESPACE = uuid.UUID("6b1f2a57-3c1e-4d0e-9a53-2f3b9d1c7e01")
REMEMBERED = 200  # identities already emitted, per zone


@dataclass
class ZoneState:
    """What the sensor remembers of a zone between looks (stored as JSON under <store>/arrivals/)."""

    emitted: list[str] = field(default_factory=list)
    pending: str | None = None  # the identity seen last, not yet emitted
    pending_since: float | None = None


@dataclass(frozen=True)
class Arrival:
    """A complete arrival: what the landed event says."""

    zone: str
    uri: str
    target: str
    identity: str
    event_id: str
    files: int
    bytes: int
    complete_by: str  # "marker" or "settle"


@dataclass(frozen=True)
class Check:
    """One look's outcome: `status` for the log, `arrival` when it is time to emit."""

    status: str
    arrival: Arrival | None = None


def event_id(zone: LandingZone, content: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{zone.name}\0{zone.uri}\0{content}"))


def check_zone(zone: LandingZone, listing: Listing, state: ZoneState, now: float) -> Check:
    """Decide on one look at the zone; updates `state` (the caller stores it after emitting)."""
    if not listing.files:
        state.pending, state.pending_since = None, None
        return Check("empty")
    content = identity(listing)
    if content in state.emitted:
        state.pending, state.pending_since = None, None
        return Check("unchanged (already emitted)")
    if state.pending != content:  # new or still changing: the settle clock starts again
        state.pending, state.pending_since = content, now
    if listing.in_progress:
        state.pending_since = now
        return Check(f"in progress ({len(listing.in_progress)} partial file(s), e.g. {listing.in_progress[0]})")
    waited = now - (state.pending_since or now)
    if zone.marker and listing.marked_complete():
        how = "marker"
    elif waited >= zone.settle_seconds:
        how = "settle"
    else:
        left = zone.settle_seconds - waited
        return Check(f"settling: {len(listing.files)} file(s), complete when {zone.marker or 'no marker'} appears or in {left:.0f}s")
    state.emitted = (state.emitted + [content])[-REMEMBERED:]
    state.pending, state.pending_since = None, None
    arrival = Arrival(zone.name, zone.uri, zone.target, content, event_id(zone, content), len(listing.files),
                      sum(e.size for e in listing.files), how)
    return Check(f"landed: {arrival.files} file(s), {arrival.bytes / 1e6:.1f} MB, complete by {how}", arrival)


def state_uri(store: str, zone: LandingZone) -> str:
    return objectstore.join(store, "arrivals", f"{zone.name}.json")


def load_state(store: str, zone: LandingZone, storage_options: dict[str, Any] | None = None) -> ZoneState:
    uri = state_uri(store, zone)
    if not objectstore.exists(uri, storage_options):
        return ZoneState()
    doc = objectstore.read_json(uri, storage_options)
    return ZoneState(list(doc.get("emitted", [])), doc.get("pending"), doc.get("pending_since"))


def save_state(store: str, zone: LandingZone, state: ZoneState, storage_options: dict[str, Any] | None = None) -> None:
    objectstore.write_json_atomic(state_uri(store, zone), asdict(state), storage_options)


def landed_event(arrival: Arrival, zones_file: str | None) -> dict[str, Any]:
    """The keyword arguments of prefect.events.emit_event for an arrival (kept here so it is testable without Prefect)."""
    resource = {
        "prefect.resource.id": f"tuneflow.zone.{arrival.zone}",
        "prefect.resource.name": arrival.zone,
        "tuneflow.zone": arrival.zone,
        "tuneflow.data.uri": arrival.uri,
        "tuneflow.target": arrival.target,
        "tuneflow.arrival": arrival.identity[:16],
        "tuneflow.zones_file": zones_file or "",
    }
    payload = {"identity": arrival.identity, "files": arrival.files, "bytes": arrival.bytes, "complete_by": arrival.complete_by}
    return {"event": LANDED_EVENT, "resource": resource, "payload": payload, "id": uuid.UUID(arrival.event_id)}
