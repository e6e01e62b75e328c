"""The sensor's decisions on real folders and a real S3 (moto over HTTP): when an arrival is complete,
its content identity and event id, the state it keeps, zones files and bucket notifications."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tasks.arrival.listing import list_zone
from tasks.arrival.notifications import object_urls, zones_touched
from tasks.arrival.sensor import ZoneState, check_zone, landed_event, load_state, save_state
from tasks.arrival.zones import LandingZone, load_zones
from tasks.errors import TuneflowError
from tasks.objectstore import storage_options_for
from tests.conftest import make_csv


def _zone(uri: str, marker: str | None = "_SUCCESS", settle: float = 60.0) -> LandingZone:
    return LandingZone("churn", uri, "churned", marker, settle, {"row_key": "customer_id"})


def _look(zone: LandingZone, state: ZoneState, now: float):
    return check_zone(zone, list_zone(zone, storage_options_for(zone.uri)), state, now)


def test_settle_time_makes_a_burst_one_arrival(tmp_path: Path) -> None:
    zone, state = _zone(str(tmp_path / "zone"), marker=None, settle=30), ZoneState()
    assert _look(zone, state, 0).status == "empty"  # a zone that does not exist yet is empty, not an error
    make_csv(tmp_path / "zone" / "a.csv", 200, seed=1)
    assert _look(zone, state, 0).status.startswith("settling")
    make_csv(tmp_path / "zone" / "b.csv", 200, seed=2)  # the listing changed: the clock starts again
    assert _look(zone, state, 20).status.startswith("settling")
    make_csv(tmp_path / "zone" / "c.csv", 200, seed=3)
    assert _look(zone, state, 40).arrival is None
    landed = _look(zone, state, 71)
    assert landed.arrival is not None and landed.arrival.files == 3 and landed.arrival.complete_by == "settle"
    assert _look(zone, state, 100).status.startswith("unchanged")  # emitted once


def test_marker_completes_at_once_and_partial_writes_wait(tmp_path: Path) -> None:
    root = tmp_path / "zone"
    zone, state = _zone(str(root), settle=3600), ZoneState()
    make_csv(root / "2026-12-01" / "part-0.csv", 200, seed=1)
    (root / "2026-12-01" / "_temporary").mkdir()
    (root / "2026-12-01" / "_temporary" / "part-1.csv").write_text("customer_id,churned\n1,")
    assert _look(zone, state, 0).status.startswith("in progress")
    shutil.rmtree(root / "2026-12-01" / "_temporary")
    assert _look(zone, state, 1).status.startswith("settling")  # no marker, settle time far away
    (root / "2026-12-01" / "_SUCCESS").write_text("")
    landed = _look(zone, state, 2)
    assert landed.arrival is not None and landed.arrival.complete_by == "marker" and landed.arrival.files == 1
    # a second batch folder without its own marker is not complete because the first one has one
    make_csv(root / "2026-12-02" / "part-0.csv", 200, seed=2)
    assert _look(zone, state, 3).status.startswith("settling")
    (root / "2026-12-02" / "_SUCCESS").write_text("")
    second = _look(zone, state, 4).arrival
    assert second is not None and second.files == 2 and second.identity != landed.arrival.identity


def test_the_same_data_dropped_again_is_the_same_arrival(tmp_path: Path) -> None:
    """Identity is content, not timestamps: a copy of the same bytes gets the same identity and event id."""
    zone = _zone(str(tmp_path / "zone"), marker=None, settle=0)
    src = make_csv(tmp_path / "src" / "a.csv", 300)
    (tmp_path / "zone").mkdir()
    shutil.copy(src, tmp_path / "zone" / "a.csv")
    state = ZoneState()
    first = _look(zone, state, 0).arrival
    assert first is not None
    (tmp_path / "zone" / "a.csv").unlink()
    assert _look(zone, state, 1).status == "empty"
    time.sleep(0.05)
    shutil.copy(src, tmp_path / "zone" / "a.csv")  # new mtime, same bytes
    assert _look(zone, state, 2).status.startswith("unchanged")
    fresh = _look(zone, ZoneState(), 3).arrival  # even a sensor that lost its state: same event id
    assert fresh is not None and (fresh.identity, fresh.event_id) == (first.identity, first.event_id)
    # different bytes: a different arrival
    make_csv(tmp_path / "zone" / "a.csv", 300, seed=99)
    other = _look(zone, state, 4).arrival
    assert other is not None and other.event_id != first.event_id


def test_s3_zone_uses_etags_and_state_lives_in_the_store(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["TUNEFLOW_S3_ENDPOINT_URL"], region_name="us-east-1")
    body = make_csv(tmp_path / "a.csv", 300).read_bytes()
    s3.put_object(Bucket=s3_bucket, Key="landing/churn/2026-12-01/part-0.csv", Body=body)
    zone = _zone(f"s3://{s3_bucket}/landing/churn/", settle=3600)
    listing = list_zone(zone, storage_options_for(zone.uri))
    assert [e.path for e in listing.files] == ["2026-12-01/part-0.csv"] and len(listing.files[0].tag) == 32  # the ETag
    state = ZoneState()
    assert check_zone(zone, listing, state, 0).arrival is None
    s3.put_object(Bucket=s3_bucket, Key="landing/churn/2026-12-01/_SUCCESS", Body=b"")
    landed = check_zone(zone, list_zone(zone, storage_options_for(zone.uri)), state, 1).arrival
    assert landed is not None and landed.complete_by == "marker"
    store = f"s3://{s3_bucket}/store"
    save_state(store, zone, state, storage_options_for(store))
    again = load_state(store, zone, storage_options_for(store))
    assert again.emitted == [landed.identity] and again.pending is None
    # re-uploading the same bytes keeps the ETag: nothing new
    s3.put_object(Bucket=s3_bucket, Key="landing/churn/2026-12-01/part-0.csv", Body=body)
    assert check_zone(zone, list_zone(zone, storage_options_for(zone.uri)), again, 2).status.startswith("unchanged")
    event = landed_event(landed, "/zones.yaml")
    assert event["event"] == "tuneflow.data.landed" and str(event["id"]) == landed.event_id
    assert event["resource"]["prefect.resource.id"] == "tuneflow.zone.churn" and event["resource"]["tuneflow.data.uri"] == zone.uri


def test_zones_file_checks(tmp_path: Path) -> None:
    good = tmp_path / "zones.yaml"
    good.write_text("zones:\n  - {name: churn, uri: s3://b/landing/churn/, target: churned, parameters: {row_key: id, n_trials: 5}}\n")
    (zone,) = load_zones(str(good))
    assert zone.flow_parameters() == {"row_key": "id", "n_trials": 5, "data": "s3://b/landing/churn/", "target": "churned", "dataset_name": "churn"}
    assert (zone.marker, zone.settle_seconds) == ("_SUCCESS", 120.0)
    cases = {
        "zones: []\n": "no 'zones' list",
        "zones:\n  - {name: Churn!, uri: x, target: y}\n": "Bad zone name",
        "zones:\n  - {name: a, uri: x}\n": "has no target",
        "zones:\n  - {name: a, uri: x, target: y, colour: red}\n": "unknown key(s) colour",
        "zones:\n  - {name: a, uri: x, target: y, parameters: {data: other}}\n": "cannot be set per zone",
        "zones:\n  - {name: a, uri: x, target: y, settle_seconds: -1}\n": "bad settle_seconds",
        "zones:\n  - {name: a, uri: x, target: y}\n  - {name: a, uri: z, target: y}\n": "twice",
        "zones: [\n": "not valid YAML",
    }
    for text, expected in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(TuneflowError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            load_zones(str(bad))
    with pytest.raises(TuneflowError, match="does not exist"):
        load_zones(str(tmp_path / "missing.yaml"))


def test_bucket_notifications_name_the_zones_they_touch() -> None:
    zones = [_zone("s3://landing/churn/"), LandingZone("fraud", "s3://landing/fraud", "is_fraud")]
    body = json.dumps({"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "landing"}, "object": {"key": "churn/2026-12-01/part+0.csv", "size": 10}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "other"}, "object": {"key": "fraud/x.csv"}}},
    ]}).encode()
    assert object_urls(body) == ["s3://landing/churn/2026-12-01/part 0.csv", "s3://other/fraud/x.csv"]
    assert [z.name for z in zones_touched(zones, object_urls(body))] == ["churn"]
    assert object_urls(json.dumps({"Event": "s3:TestEvent"}).encode()) == []
    sns = json.dumps({"Type": "Notification", "Message": body.decode()}).encode()  # S3 -> SNS -> HTTPS subscription
    assert object_urls(sns) == object_urls(body)
    with pytest.raises(TuneflowError, match="confirmed: https://sns.example/confirm"):
        object_urls(json.dumps({"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm"}).encode())
    for bad in (b"not json", b'{"foo": 1}'):
        with pytest.raises(TuneflowError):
            object_urls(bad)


@pytest.mark.parametrize(
    ("zones_text", "api", "needle"),
    [
        ("zones:\n  - {name: a, uri: /tmp/x, target: y}\n", None, "PREFECT_API_URL is not set"),
        ("zones:\n  - {name: A B, uri: /tmp/x, target: y}\n", "http://127.0.0.1:9/api", "Bad zone name"),
        (None, "http://127.0.0.1:9/api", "does not exist"),
    ],
)
def test_watch_and_relay_refuse_bad_setups_with_one_line(tmp_path: Path, zones_text: str | None, api: str | None, needle: str) -> None:
    import subprocess
    import sys

    zones = tmp_path / "zones.yaml"
    if zones_text is not None:
        zones.write_text(zones_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | ({"PREFECT_API_URL": api} if api else {})
    tuneflow = str(Path(sys.executable).parent / "tuneflow")
    for args in (["watch", "--zones", str(zones), "--once"], ["relay", "--zones", str(zones), "--port", "0"]):
        proc = subprocess.run([tuneflow, *args], env=env, capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
