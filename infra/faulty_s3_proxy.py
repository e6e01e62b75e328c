"""A fault-injecting HTTP proxy in front of an S3 endpoint (moto's server), for chaos tests.

    .venv/bin/python infra/faulty_s3_proxy.py --upstream http://127.0.0.1:55000 --port 55001 \
        --rate 0.2 --seed 1 [--kinds 500,503,reset,reset_after,truncate] [--methods PUT,POST]
    export TUNEFLOW_S3_ENDPOINT_URL=http://127.0.0.1:55001    # tuneflow now talks S3 through it

or in-process (tests, benchmarks/chaos.py):

    with FaultyS3Proxy("http://127.0.0.1:55000", rate=0.2, seed=1) as proxy:
        os.environ["TUNEFLOW_S3_ENDPOINT_URL"] = proxy.url
        ...
        proxy.stats()   # requests, faults by kind and by method

Each request is forwarded verbatim (method, raw path and query, body, headers but hop-by-hop
ones) unless a seeded draw (probability `rate`, only for `methods` and paths matching `path_re`)
picks a fault, one of `kinds`:

  500          HTTP 500 InternalError (S3's XML error body); the request never reaches moto
  503          HTTP 503 SlowDown; the request never reaches moto
  reset        the connection is aborted before forwarding (client sees a reset/disconnect)
  reset_after  forwarded (moto applies it), then the connection is aborted with no response:
               the client cannot know that its write happened and must retry it
  truncate     forwarded; the response promises the whole body, sends half, then aborts (reads)

`script` forces faults first: {"PUT": ["reset_after", "500"]} fails the first two PUTs (that
`methods`/`path_re` let through) with those kinds, whatever the draws say, so a short test is sure
to see a write applied-but-unacknowledged and a failed write.
The draws come from one `random.Random(seed)` in request-arrival order: the same seed gives the
same fault sequence, but which request gets which fault depends on the clients' timing.
Bounded: binds 127.0.0.1 only, at most `max_concurrency` requests in flight, request bodies up to
`max_body` bytes, upstream calls time out after `upstream_timeout_s`, and the request log keeps
the last `log_size` entries. Control endpoint: GET /__faults__ returns the counters as JSON;
POST /__faults__ with a JSON object (rate, kinds, methods, path_re, seed, script) changes the
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import threading
from typing import Any, Iterable

import aiohttp
from aiohttp import web
from yarl import URL

KINDS = ("500", "503", "reset", "reset_after", "truncate")
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "expect", "host", "content-length",
}
CONTROL_PATH = "/__faults__"
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faulty-proxy-{n}</RequestId></Error>"
)


class FaultyS3Proxy:
    """The proxy, served by its own event loop in a background thread (start/stop or `with`)."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Iterable[str] = KINDS,
        methods: Iterable[str] | None = None,
        path_re: str | None = None,
        script: dict[str, list[str]] | None = None,
        max_concurrency: int = 64,
        max_body: int = 512 * 1024 * 1024,
        upstream_timeout_s: float = 120.0,
        log_size: int = 10_000,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy only binds a loopback address")
        self.upstream = upstream.rstrip("/")
        self.host, self.port = host, port
        self.max_concurrency, self.max_body, self.upstream_timeout_s = max_concurrency, max_body, upstream_timeout_s
        self._lock = threading.Lock()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_size)
        self._counts: collections.Counter[str] = collections.Counter()
        self.configure(rate=rate, seed=seed, kinds=kinds, methods=methods, path_re=path_re, script=script or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ settings and counters

    def configure(self, *, rate: float | None = None, seed: int | None = None, kinds: Iterable[str] | None = None,
                  methods: Iterable[str] | None | str = "keep", path_re: str | None | bool = False,
                  script: dict[str, list[str]] | None = None) -> None:
        """Change the fault settings (thread-safe); a new seed restarts the draw sequence."""
        with self._lock:
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"rate must be in [0, 1], got {rate}")
                self.rate = float(rate)
            if seed is not None or not hasattr(self, "_rng"):
                self.seed = 0 if seed is None else int(seed)
                self._rng = random.Random(self.seed)
            if kinds is not None:
                kinds = tuple(kinds)
                unknown = set(kinds) - set(KINDS)
                if unknown or not kinds:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
                self.kinds = kinds
            if methods != "keep":
                self.methods = None if methods is None else frozenset(m.upper() for m in methods)  # type: ignore[union-attr]
            if path_re is not False:
                self.path_re = re.compile(path_re) if path_re else None  # type: ignore[arg-type]
            if script is not None:
                bad = {k for ks in script.values() for k in ks} - set(KINDS)
                if bad:
                    raise ValueError(f"unknown fault kinds {sorted(bad)} in script; choose from {KINDS}")
                self.script = {m.upper(): list(ks) for m, ks in script.items()}

    def stats(self) -> dict[str, Any]:
        """Counters: requests, forwarded, faults (total, by kind, by method), upstream errors."""
        with self._lock:
            c = dict(self._counts)
        faults_by_kind = {k: c.get(f"fault:{k}", 0) for k in KINDS}
        return {
            "requests": c.get("requests", 0),
            "forwarded": c.get("forwarded", 0),
            "faults": sum(faults_by_kind.values()),
            "faults_by_kind": faults_by_kind,
            "faults_by_method": {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("fault_method:")},
            "requests_by_method": {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("method:")},
            "upstream_errors": c.get("upstream_errors", 0),
            "rate": self.rate,
            "seed": self.seed,
            "kinds": list(self.kinds),
            "methods": sorted(self.methods) if self.methods else None,
            "script_left": {m: list(ks) for m, ks in self.script.items() if ks},
        }

    def log(self) -> list[dict[str, Any]]:
        """The most recent requests: method, path, fault (or None), status."""
        with self._lock:
            return list(self._log)

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()

    def _draw(self, method: str, path: str) -> str | None:
        with self._lock:
            self._counts["requests"] += 1
            self._counts[f"method:{method}"] += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self.path_re is not None and not self.path_re.search(path):
                return None
            if self.script.get(method):
                kind = self.script[method].pop(0)
            elif self.rate <= 0.0 or self._rng.random() >= self.rate:
                return None
            else:
                kind = self._rng.choice(self.kinds)
            if kind == "truncate" and method not in ("GET",):
                kind = "reset_after"  # only a body that is read can be cut short
            self._counts[f"fault:{kind}"] += 1
            self._counts[f"fault_method:{method}"] += 1
            return kind

    def _record(self, **entry: Any) -> None:
        with self._lock:
            self._log.append(entry)
            if entry.get("forwarded"):
                self._counts["forwarded"] += 1
            if entry.get("upstream_error"):
                self._counts["upstream_errors"] += 1

    # ------------------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == CONTROL_PATH:
            return await self._control(request)
        async with self._semaphore:
            method = request.method.upper()
            fault = self._draw(method, request.path)
            body = await request.read()
            if fault in ("500", "503"):
                self._record(method=method, path=request.path, fault=fault, status=int(fault))
                code, message = ("InternalError", "We encountered an internal error. Please try again.") if fault == "500" else (
                    "SlowDown", "Please reduce your request rate.")
                n = self._counts["requests"]
                return web.Response(status=int(fault), body=_ERROR_XML.format(code=code, message=message, n=n).encode(), content_type="application/xml")
            if fault == "reset":
                self._record(method=method, path=request.path, fault=fault, status=None)
                return self._abort(request)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            url = URL(self.upstream + request.raw_path, encoded=True)
            try:
                async with self._session.request(method, url, headers=headers, data=body if body else None, allow_redirects=False) as up:
                    payload = await up.read()
                    status, up_headers = up.status, up.headers
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._record(method=method, path=request.path, fault=fault, status=502, upstream_error=repr(exc))
                return web.Response(status=502, text=f"upstream error: {exc!r}")
            self._record(method=method, path=request.path, fault=fault, status=status, forwarded=True)
            if fault == "reset_after":
                return self._abort(request)
            response = web.StreamResponse(status=status)
            for k, v in up_headers.items():
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server"):
                    response.headers.add(k, v)
            if method == "HEAD":  # no body, but the object's size stays in Content-Length
                if "Content-Length" in up_headers:
                    response.content_length = int(up_headers["Content-Length"])
                await response.prepare(request)
                await response.write_eof()
                return response
            response.content_length = len(payload)
            await response.prepare(request)
            if fault == "truncate" and len(payload) > 1:
                await response.write(payload[: len(payload) // 2])
                return self._abort(request)
            await response.write(payload)
            await response.write_eof()
            return response

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()  # RST/close without a response
        raise asyncio.CancelledError()

    async def _control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.configure(**json.loads(await request.read() or b"{}"))
            except (TypeError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.stats())

    async def _start(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.upstream_timeout_s),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            connector=aiohttp.TCPConnector(limit=self.max_concurrency),
        )
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001 (reported to start())
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._session.close())
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FaultyS3Proxy":
        self._thread = threading.Thread(target=self._serve, name="faulty-s3-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fault proxy did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"the fault proxy did not start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> "FaultyS3Proxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", default="http://127.0.0.1:55000", help="the S3 endpoint to forward to (moto's server)")
    p.add_argument("--port", type=int, default=55001, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--rate", type=float, default=0.1, help="share of requests that fail, 0..1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list from {','.join(KINDS)}")
    p.add_argument("--methods", default=None, help="fail only these HTTP methods (comma list), e.g. PUT,POST")
    p.add_argument("--path-re", default=None, help="fail only paths matching this regex")
    p.add_argument("--script", default=None, help='JSON: faults forced first, e.g. \'{"PUT": ["reset_after", "500"]}\'')
    args = p.parse_args(argv)
    proxy = FaultyS3Proxy(
        args.upstream, port=args.port, rate=args.rate, seed=args.seed, kinds=args.kinds.split(","),
        methods=args.methods.split(",") if args.methods else None, path_re=args.path_re,
        script=json.loads(args.script) if args.script else None,
    ).start()
    print(f"faulty S3 proxy on {proxy.url} -> {args.upstream} (rate {args.rate}, seed {args.seed}); stats: GET {proxy.url}{CONTROL_PATH}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(proxy.stats()), flush=True)
        proxy.stop()


if __name__ == "__main__":
    main()
