"""Bucket notifications (S3's event JSON, which MinIO's webhook target also sends) -> the zones they touch."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from tasks.arrival.zones import LandingZone
from tasks.errors import TuneflowError


def object_urls(body: bytes) -> list[str]:
    """The s3:// URLs of the objects a notification body names (created or removed alike)."""
    try:
        doc: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TuneflowError("The notification body is not JSON.", "send S3 event notifications (Records[].s3.bucket.name / object.key).") from None
    if isinstance(doc, dict) and doc.get("Type") == "SubscriptionConfirmation":
        # never fetched from here (a URL in an unauthenticated request): confirm it by hand
        raise TuneflowError(f"An SNS subscription asks to be confirmed: {doc.get('SubscribeURL')}.",
                            "open that URL once (or aws sns confirm-subscription) to start receiving notifications.")
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        return object_urls(doc["Message"].encode())  # SNS wraps the S3 event JSON in its own envelope
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        if isinstance(doc, dict) and doc.get("Event") == "s3:TestEvent":  # S3 sends this when a notification is set up
            return []
        raise TuneflowError("The notification has no Records list.", "send S3 event notifications (Records[].s3.bucket.name / object.key).")
    urls = []
    for record in records:
        s3 = record.get("s3") if isinstance(record, dict) else None
        bucket = (s3 or {}).get("bucket", {}).get("name")
        key = (s3 or {}).get("object", {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            urls.append(f"s3://{bucket}/{unquote_plus(key)}")  # S3 URL-encodes keys in notifications
    return urls


def zones_touched(zones: list[LandingZone], urls: list[str]) -> list[LandingZone]:
    """The zones whose prefix holds one of `urls`."""
    def inside(url: str, zone: LandingZone) -> bool:
        root = zone.uri.rstrip("/") + "/"
        return url.startswith(root)

    return [z for z in zones if any(inside(u, z) for u in urls)]
