"""Tell Prefect by hand that new data has landed in a zone, which triggers `tune-landed/on-new-data`.

    python deployments/emit_landed.py churn s3://bucket/landing/churn/ churned

`tuneflow watch` (or the landing-sensor deployment) sends the same event by itself, once per
complete arrival; this script is for a writer that knows when it is done. The event id is
derived from the zone, the data URI and the data's content listing, so sending it twice for the
same data starts one run.
"""

from __future__ import annotations

import sys

from prefect.events import emit_event

from tasks.arrival.listing import identity, list_zone
from tasks.arrival.sensor import Arrival, event_id, landed_event
from tasks.arrival.zones import LandingZone
from tasks.errors import TuneflowError
from tasks.names import check_name
from tasks.objectstore import storage_options_for


def emit_landed(zone: str, data_uri: str, target: str) -> str:
    """Emit tuneflow.data.landed for `data_uri` as zone `zone`; returns the event id."""
    the_zone = LandingZone(check_name(zone, "zone name"), data_uri, target, marker=None, settle_seconds=0)
    listing = list_zone(the_zone, storage_options_for(data_uri))
    if not listing.files:
        raise TuneflowError(f"No data files under {data_uri}.", "point at a folder or prefix holding CSV/Parquet files.")
    content = identity(listing)
    arrival = Arrival(the_zone.name, data_uri, target, content, event_id(the_zone, content), len(listing.files),
                      sum(e.size for e in listing.files), "writer")
    emit_event(**landed_event(arrival, None))
    return arrival.event_id


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python deployments/emit_landed.py ZONE DATA_URI TARGET")
    try:
        eid = emit_landed(*sys.argv[1:])
    except TuneflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"emitted tuneflow.data.landed for zone {sys.argv[1]} ({sys.argv[2]}), event id {eid}")
