"""Object-store access through fsspec: local folders, file:// and s3:// alike."""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs



def storage_options_for(uri: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for `uri`; S3 gets the configured endpoint (MinIO, moto) if any."""
    if uri.startswith(("s3://", "s3a://")):
        from tasks.settings import get_settings  # pydantic-settings: not needed on workers

        endpoint = endpoint_url or get_settings().resolved_s3_endpoint()
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


def filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return (filesystem, path without protocol) for `uri`."""
    options = storage_options if storage_options is not None else storage_options_for(uri)
    return url_to_fs(uri, **options)


def join(root: str, *parts: str) -> str:
    """Join URI parts with '/', keeping the protocol."""
    return posixpath.join(root.rstrip("/"), *parts)


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn a protocol-less path from `fs` back into a URI other processes can open."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def read_json(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    fs, path = filesystem(uri, storage_options)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def exists(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(uri, storage_options)
    return fs.exists(path)


def write_bytes_atomic(uri: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write so a reader sees the old object or the whole new one, never a part.

    S3 PUTs are atomic by themselves; on a file system we write a temporary file and rename it.
    """
    fs, path = filesystem(uri, storage_options)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    else:
        with fs.open(path, "wb") as f:
            f.write(data)


def write_json_atomic(uri: str, obj: Any, storage_options: dict[str, Any] | None = None) -> None:
    write_bytes_atomic(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), storage_options)
