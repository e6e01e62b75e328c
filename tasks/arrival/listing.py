"""What is under a landing zone now: data files with a content identity, markers, and writes in progress."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tasks import objectstore
from tasks.arrival.zones import LandingZone
from tasks.errors import TuneflowError

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# Writers' half-done output: Spark/Hadoop's _temporary folders, copy tools' suffixes, hidden files.
_IN_PROGRESS_SUFFIXES = (".tmp", ".inprogress", "._COPYING_", ".part", ".crdownload")
_HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class Entry:
    """A data file under the zone: its path relative to the zone, its size and a content tag."""

    path: str
    size: int
    tag: str
    modified: float


@dataclass(frozen=True)
class Listing:
    """One look at a zone."""

    files: tuple[Entry, ...]
    markers: dict[str, float]  # folder (relative, "" for the zone root) -> when its marker was written
    in_progress: tuple[str, ...]

    def folders(self) -> set[str]:
        return {_folder(e.path) for e in self.files}

    def marked_complete(self) -> bool:
        """Every folder holding data has a marker written after its newest data file (writers write it last)."""
        newest: dict[str, float] = {}
        for e in self.files:
            newest[_folder(e.path)] = max(newest.get(_folder(e.path), 0.0), e.modified)
        return bool(newest) and all(folder in self.markers and self.markers[folder] >= t for folder, t in newest.items())


# Content hashes of local files, so a zone is not re-read on every look: (path, size, mtime) -> md5.
_local_hashes: dict[tuple[str, int, float], str] = {}


def list_zone(zone: LandingZone, storage_options: dict[str, Any] | None = None) -> Listing:
    """List everything under the zone (recursively); an unreadable zone is one clear error."""
    fs, root = objectstore.filesystem(zone.uri, storage_options)
    root = root.rstrip("/")
    try:
        found = fs.find(root, detail=True) if fs.isdir(root) else {}
    except FileNotFoundError:
        found = {}
    except PermissionError as exc:
        raise TuneflowError(f"Cannot list landing zone {zone.name} ({zone.uri}): {exc}.", "check the credentials and the bucket policy.") from None
    files, markers, busy = [], {}, []
    for path, info in sorted(found.items()):
        rel = path[len(root):].lstrip("/")
        parts = rel.split("/")
        modified = _modified(info)
        if any(p.startswith((".", "_temporary")) for p in parts) or rel.endswith(_IN_PROGRESS_SUFFIXES):
            busy.append(rel)
        elif zone.marker and parts[-1] == zone.marker:
            markers[_folder(rel)] = modified
        elif rel.lower().endswith(DATA_SUFFIXES):
            files.append(Entry(rel, int(info.get("size") or 0), _tag(fs, path, info, modified), modified))
    return Listing(tuple(files), markers, tuple(busy))


def identity(listing: Listing) -> str:
    """The arrival's content identity: a hash of every data file's path, size and content tag."""
    digest = hashlib.sha256()
    for e in sorted(listing.files, key=lambda e: e.path):
        digest.update(f"{e.path}\0{e.size}\0{e.tag}\n".encode())
    return digest.hexdigest()


def _folder(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _modified(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0.0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _tag(fs: Any, path: str, info: dict[str, Any], modified: float) -> str:
    """S3's ETag where the store has one; else an MD5 of the content (a copy of the same bytes is the same data)."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    key = (path, int(info.get("size") or 0), modified)
    if key not in _local_hashes:
        digest = hashlib.md5(usedforsecurity=False)
        with fs.open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        _local_hashes[key] = digest.hexdigest()
    return _local_hashes[key]
