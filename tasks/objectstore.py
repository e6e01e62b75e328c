"""Object-store access through fsspec: local folders, file:// and s3:// alike."""

from __future__ import annotations

import codecs
import json
import os
import posixpath
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.core import url_to_fs

from tasks.errors import TuneflowError, is_transient

# Reachability probes (check_reachable, check_writable): a few quick tries, then one clear error.
# botocore's own retries are off for the probe (its default is 5 attempts with backoff: ~6 s per
# call, and a listing makes several calls), and connecting gives up after CONNECT_TIMEOUT_S.
REACH_TRIES = 3
REACH_BACKOFF_S = (0.5, 1.5)  # before the second and the third try
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
PROBE_PREFIX = ".tuneflow-write-probe-"
_LOCAL = ("file", "local")


def storage_options_for(uri: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for `uri`; S3 gets the configured endpoint (MinIO, moto) if any.

    A chained URL (zip://part.csv::s3://bucket/a.zip) gets them for its S3 link, keyed by
    protocol as fsspec routes chained options."""
    if "::" in uri:
        inner = [link for link in uri.split("::")[1:] if link.startswith(("s3://", "s3a://"))]
        return {link.split("://", 1)[0]: storage_options_for(link, endpoint_url) for link in inner}
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


def unstrip(fs: fsspec.AbstractFileSystem, path: str, like: str | None = None) -> str:
    """Turn a protocol-less path from `fs` back into a URI other processes can open.

    `like`: the URI `fs` came from. A chained one keeps its chain: a member `part.csv` listed in
    `zip://*.csv::s3://bucket/a.zip` is `zip://part.csv::s3://bucket/a.zip` (alone, `zip://part.csv`
    would open an archive named part.csv in the working directory); a cache layer with no path
    of its own (`simplecache::s3://bucket/dir/`) gets the path in its next link."""
    links = like.split("::") if like and "::" in like else []
    if links and "://" not in links[0]:  # simplecache::, filecache::, blockcache::
        inner = links[1].split("://", 1)[0] if "://" in links[1] else "file"
        rest = [f"{inner}://{path}", *links[2:]]
        return "::".join([links[0], *rest])
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    uri = path if protocol in _LOCAL and not links else f"{protocol}://{path}"
    return "::".join([uri, *links[1:]])


def file_link(uri: str) -> str:
    """The link of a chained URL that names the file: `zip://part.csv` in zip://part.csv::s3://b/a.zip,
    `s3://b/x.csv` in simplecache::s3://b/x.csv; a plain URI itself."""
    return next((link for link in uri.split("::") if "://" in link or "/" in link), uri) if "::" in uri else uri


def is_local(uri: str) -> bool:
    """A plain path or file:// URI (no chain)."""
    return "::" not in uri and ("://" not in uri or uri.startswith(("file://", "local://")))


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


# ----------------------------------------------------------------------------- reachability


def unreachable_reason(exc: BaseException) -> str | None:
    """Why `exc` says the endpoint could not be reached ('connection refused', 'timed out', ...),
    or None when it is another failure (a missing object, a denied request, bad data)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text or "connect call failed" in text:
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or "name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain) or names & {
        "FSTimeoutError", "ConnectTimeoutError", "ReadTimeoutError", "ServerTimeoutError", "ConnectionTimeoutError", "SocketTimeoutError",
    }:
        return "timed out"
    if any(isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) for e in chain) or names & {
        "EndpointConnectionError", "ClientConnectorError", "ServerDisconnectedError", "ConnectionClosedError", "ClientOSError",
    }:
        return "connection failed"
    return None


def _endpoint(uri: str, options: dict[str, Any]) -> str:
    """The host a URI's requests go to, for the error message."""
    remote = ("s3://", "s3a://", "http://", "https://")
    link = next((u for u in uri.split("::") if u.startswith(remote)), next((u for u in uri.split("::") if "://" in u), uri))
    protocol = link.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        opts = options.get(protocol, options) if "::" in uri else options
        endpoint = (opts.get("client_kwargs") or {}).get("endpoint_url") or opts.get("endpoint_url")
        return f"endpoint {endpoint}" if endpoint else "endpoint: AWS S3 (no TUNEFLOW_S3_ENDPOINT_URL / AWS_ENDPOINT_URL set)"
    parsed = urlsplit(link)
    return f"host {parsed.netloc}" if parsed.netloc else f"{protocol}://"


def _unreachable_fix(uri: str) -> str:
    if any(link.startswith(("s3://", "s3a://")) for link in uri.split("::")):
        return "check the S3 endpoint (TUNEFLOW_S3_ENDPOINT_URL or AWS_ENDPOINT_URL), that it is up and that this machine can reach it (network, proxy, VPN), then run again."
    return "check the URL's host and port, that the server is up and that this machine can reach it (network, proxy, VPN), then run again."


def _probe_options(uri: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with quick failure for a probe: no botocore retries, short connect and read timeouts."""
    def quick(protocol: str, opts: dict[str, Any]) -> dict[str, Any]:
        opts = dict(opts)
        if protocol in ("s3", "s3a"):
            config = dict(opts.get("config_kwargs") or {})
            config.update(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
            opts["config_kwargs"] = config
        elif protocol in ("http", "https"):
            import aiohttp

            client = dict(opts.get("client_kwargs") or {})
            client["timeout"] = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT_S + READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
            opts["client_kwargs"] = client
        return opts

    if "::" not in uri:
        protocol = uri.split("://", 1)[0] if "://" in uri else "file"
        return {**quick(protocol, options), "skip_instance_cache": True}
    out = dict(options)
    for link in uri.split("::")[1:]:
        protocol = link.split("://", 1)[0] if "://" in link else None
        if protocol in ("s3", "s3a", "http", "https"):
            out[protocol] = {**quick(protocol, options.get(protocol) or {}), "skip_instance_cache": True}
    return out


def _with_retries(uri: str, what: str, options: dict[str, Any], attempt: Any) -> Any:
    """`attempt()` up to REACH_TRIES times while the endpoint cannot be reached, then one error."""
    for i in range(REACH_TRIES):
        try:
            return attempt()
        except TuneflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; anything else is re-raised
            if type(exc).__name__ == "NoCredentialsError":
                raise TuneflowError(
                    f"No S3 credentials for {uri} ({what}).",
                    "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or name a credentials block in TUNEFLOW_S3_CREDENTIALS_BLOCK.",
                ) from None
            reason = unreachable_reason(exc)
            if reason is None and not is_transient(exc):  # e.g. a missing object: the caller says what is missing
                raise
            if i + 1 == REACH_TRIES and reason is None:  # a 5xx / SlowDown that lasted: not the user's fault, still one line
                raise TuneflowError(
                    f"{uri} ({what}) kept failing: {_first_line(exc)} ({_endpoint(uri, options)}; {REACH_TRIES} tries).",
                    "the store is having trouble: try again shortly, or check the endpoint's health.",
                ) from None
            if i + 1 == REACH_TRIES:
                raise TuneflowError(
                    f"Cannot reach {uri} ({what}): {reason} ({_endpoint(uri, options)}; {REACH_TRIES} tries).", _unreachable_fix(uri),
                ) from None
            time.sleep(REACH_BACKOFF_S[min(i, len(REACH_BACKOFF_S) - 1)])
    raise AssertionError("unreachable")


def check_reachable(uri: str, options: dict[str, Any] | None = None, what: str = "--data") -> None:
    """For a remote URI (s3://, http(s)://, a chain over one): one quick request, retried a few
    times while the endpoint cannot be reached (connection refused, timeout, unknown host), then a
    TuneflowError naming the URI, the reason and the endpoint. A missing object is not an error
    here (the caller says what is missing). Local paths are not probed."""
    if is_local(uri):
        return
    options = storage_options_for(uri) if options is None else options
    head = uri.split("::", 1)[0]
    glob_at = min((head.index(c) for c in "*?[" if c in head), default=None)
    probe = uri if glob_at is None else head[:glob_at].rsplit("/", 1)[0] + ("::" + uri.split("::", 1)[1] if "::" in uri else "")

    def attempt() -> None:
        fs, path = url_to_fs(probe, **_probe_options(probe, options))
        try:
            fs.info(path)
        except FileNotFoundError as exc:
            if unreachable_reason(exc):  # fsspec's http reports a refused connection as FileNotFoundError
                raise
        except PermissionError:
            pass  # reached; the caller reports what it may not read

    _with_retries(uri, what, options, attempt)


def check_writable(store: str, options: dict[str, Any] | None = None, what: str = "--store") -> None:
    """Write and delete a small probe object under `store`, so an unwritable store fails before any
    work, not after validation. A local folder that does not exist yet is created for the probe
    and removed again (the run creates it when it writes)."""
    options = storage_options_for(store) if options is None else options
    if is_local(store):
        _check_local_writable(store, what)
        return
    fs, root = url_to_fs(store, **_probe_options(store, options))
    probe = posixpath.join(root.rstrip("/"), f"{PROBE_PREFIX}{uuid.uuid4().hex}")

    def attempt() -> None:
        fs.pipe_file(probe, b"tuneflow write probe\n")
        fs.rm(probe)

    fix = f"pass a --store you can write to (or set TUNEFLOW_STORE), or grant this identity s3:PutObject and s3:DeleteObject on {store}."
    try:
        _with_retries(store, what, options, attempt)
    except FileNotFoundError as exc:
        bucket = root.split("/", 1)[0]
        raise TuneflowError(f"Cannot write to {what} {store}: bucket '{bucket}' does not exist ({_endpoint(store, options)}).",
                            f"create it (aws s3 mb s3://{bucket}) or pass another {what}.") from exc
    except PermissionError as exc:
        raise TuneflowError(f"Cannot write to {what} {store}: access denied ({_first_line(exc)}).", fix) from exc
    except OSError as exc:
        raise TuneflowError(f"Cannot write to {what} {store}: {_first_line(exc)}.", fix) from exc


def _check_local_writable(store: str, what: str) -> None:
    path = os.path.abspath(store[len("file://"):] if store.startswith("file://") else store)
    fix = f"pass a {what} folder you can write to (or set TUNEFLOW_STORE), or fix the folder's permissions."
    existing = path
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.exists(existing) and not os.path.isdir(existing):
        raise TuneflowError(f"Cannot write to {what} {store}: {existing} is a file, not a folder.", fix)
    created: list[str] = []
    d = path
    while d != existing:
        created.append(d)
        d = os.path.dirname(d)
    probe = os.path.join(path, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    step = f"creating the folder {path}" if created else f"writing a file in {path}"
    try:
        os.makedirs(path, exist_ok=True)
        step = f"writing a file in {path}"
        with open(probe, "wb") as f:
            f.write(b"tuneflow write probe\n")
        os.remove(probe)
    except OSError as exc:
        raise TuneflowError(f"Cannot write to {what} {store}: {step} failed ({exc.strerror or type(exc).__name__}).", fix) from None
    finally:
        for d in created:  # deepest first; another process may have written there meanwhile: then it stays
            try:
                os.rmdir(d)
            except OSError:
                break


MAX_TEXT_BYTES = 16 * 1024 * 1024  # a space/expectations/enqueue file is small: read whole to check it


def not_utf8(uri: str, what: str, exc: UnicodeDecodeError, fix_tail: str = "then pass that file.", *, whole: bool = False) -> TuneflowError:
    """The error for a file that is not UTF-8: which file, the byte (and its offset when `whole`:
    the decoded bytes were the file's start, not a reader's chunk), and the iconv line that converts it."""
    byte = exc.object[exc.start : exc.start + 1].hex() if isinstance(exc.object, (bytes, bytearray)) else "?"
    where = f"byte 0x{byte} at offset {exc.start}" if whole else f"byte 0x{byte}"
    name = file_link(uri).rstrip("/").rsplit("/", 1)[-1] or "file"
    stem, dot, ext = name.partition(".")
    return TuneflowError(
        f"{what} {uri} is not UTF-8 text ({where}; Latin-1 or Windows-1252, perhaps): tuneflow reads text files as UTF-8.",
        f"convert it, e.g. iconv -f latin1 -t utf-8 {name} > {stem}.utf8{dot}{ext} (cp1252 for Windows files), {fix_tail}",
    )


def check_text_file(uri: str | None, what: str) -> None:
    """For a YAML/JSON file option (--space, --expectations, --enqueue): a remote one must be
    reachable (check_reachable: 'Cannot reach', not 'does not exist') and any one must be UTF-8
    (or UTF-16/32 after a byte-order mark, which the loaders read). A file that is not there is
    left to the loader, which says so."""
    if uri is None:
        return
    options = storage_options_for(uri)
    check_reachable(uri, options, what)
    try:
        fs, path = filesystem(uri, options)
        if not fs.isfile(path):
            return
        with fs.open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES)
    except (OSError, ValueError):
        return  # the loader reports it, in its words
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return  # UTF-16/32 with a byte-order mark: the YAML/JSON loaders read it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(data) < MAX_TEXT_BYTES or exc.start < len(data) - 4:  # not a character cut by the read limit
            raise not_utf8(uri, f"The {what} file", exc, whole=True) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300].rstrip(".")
