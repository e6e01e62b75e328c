"""One switch picks the Dask cluster: a scheduler address, or a LocalCluster sized to this machine."""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from tasks.errors import TuneflowError
from tasks.engine.training import gpu_count


def local_worker_count(parallelism: int, device: str) -> int:
    """One worker process per concurrent trial, at most one per core (or per GPU).

    Each CPU worker gets `cores // workers` threads, and each trial on it `trial_threads`
    XGBoost threads: with one trial per worker the host is used fully and never oversubscribed.
    """
    if device in ("cuda", "auto") and gpu_count() > 0:
        return max(1, min(parallelism, gpu_count()))
    return max(1, min(parallelism, os.cpu_count() or 1))


def trial_threads(client: Client, dask_address: str | None) -> int | None:
    """XGBoost threads per trial: this machine's cores split over the LocalCluster's workers;
    None on an external cluster, where each worker splits its own host's cores over its threads."""
    if dask_address:
        return None
    return max(1, (os.cpu_count() or 1) // len(client.scheduler_info()["workers"]))


@contextlib.contextmanager
def dask_client(address: str | None, parallelism: int, device: str = "auto") -> Iterator[Client]:
    """Connect to `address`, or start a process-based LocalCluster (LocalCUDACluster with GPUs)."""
    if address:
        check_tls(address)
        try:
            client = Client(address, timeout="20s", set_as_default=True)
        except OSError as exc:
            raise connection_error(address, exc) from exc
        with client:
            yield client
        return
    n = local_worker_count(parallelism, device)
    # A worker death fails its task at once (KilledWorker) instead of a silent re-run elsewhere,
    # so the Prefect retry that follows is counted on the trial ("attempt") and traceable.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    cluster = None
    if device in ("cuda", "auto") and gpu_count() > 0:
        with contextlib.suppress(ImportError):
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=n, threads_per_worker=1, dashboard_address=":0")
    if cluster is None:
        cluster = LocalCluster(n_workers=n, threads_per_worker=max(1, (os.cpu_count() or 1) // n), processes=True, dashboard_address=":0", memory_limit=None)
    with cluster, Client(cluster, set_as_default=True) as client:
        yield client


# distributed's own TLS settings for a client (`distributed.comm.tls.*` in a Dask config file, or these
# environment variables), read by Client's default Security(); tuneflow has no TLS settings of its own.
TLS_VARIABLES = {
    "ca_file": "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
    "cert": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
    "key": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY",
}
_TLS_FIX = ("set DASK_DISTRIBUTED__COMM__TLS__CA_FILE (the cluster's CA), DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and "
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (a certificate that CA signed) to PEM files, or the same keys under "
            "distributed.comm.tls in a Dask config file (README, 'Locking down a shared cluster').")


def check_tls(address: str) -> None:
    """A tls:// address needs the cluster's CA and a client certificate and key that load: one clear
    error here, before Client() fails with a TypeError or an ssl traceback. A configured
    `distributed.client.security-loader` supplies its own and is left to do so."""
    if not address.startswith("tls://") or dask.config.get("distributed.client.security-loader", None):
        return
    from distributed.security import Security

    security = Security()
    tls = security.get_tls_config_for_role("client")
    missing = [var for name, var in TLS_VARIABLES.items() if name != "key" and not tls.get(name)]
    if missing:
        raise TuneflowError(f"--dask-address {address} asks for TLS, but no client certificate is configured ({', '.join(missing)} not set).", _TLS_FIX)
    for name, var in TLS_VARIABLES.items():
        value = tls.get(name)
        if value and "\n" not in value and not os.path.isfile(value):  # a path, not inline PEM
            raise TuneflowError(f"{var}={value}: no such file.", _TLS_FIX)
    try:
        security.get_connection_args("client")  # loads the CA and the certificate chain
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a key that does not match its certificate, not PEM
        raise TuneflowError(f"The Dask TLS client certificate does not load: {_ssl_reason(exc)}.", _TLS_FIX) from None


def connection_error(address: str, exc: BaseException) -> TuneflowError:
    """What a failed connection to the scheduler means, as one line."""
    reason = _ssl_reason(exc)
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return TuneflowError(f"The Dask scheduler at {address} presented a certificate that DASK_DISTRIBUTED__COMM__TLS__CA_FILE does not trust ({reason}).",
                             "point DASK_DISTRIBUTED__COMM__TLS__CA_FILE at the CA that signed the scheduler's certificate.")
    if any(alert in reason for alert in ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE", "ALERT_ACCESS_DENIED", "ALERT_HANDSHAKE_FAILURE")):
        return TuneflowError(f"The Dask scheduler at {address} rejected this client's TLS certificate ({reason}).",
                             "use a client certificate signed by the CA the scheduler and workers trust (their --tls-ca-file), in DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT/__KEY.")
    if address.startswith("tls://") and any(eof in reason for eof in ("EOF occurred in violation of protocol", "UNEXPECTED_EOF")):
        # TLS 1.3: the client's side of the handshake can finish before the scheduler checks the
        # client's certificate, so a rejection arrives as the connection closing, not as an alert
        return TuneflowError(f"The Dask scheduler at {address} closed the TLS connection: it most likely rejected this client's TLS certificate ({reason}).",
                             "use a client certificate signed by the CA the scheduler and workers trust (their --tls-ca-file), in DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT/__KEY.")
    if "WRONG_VERSION_NUMBER" in reason:
        return TuneflowError(f"The Dask scheduler at {address} does not speak TLS ({reason}).", "connect with tcp://HOST:PORT, or start the scheduler with --protocol tls.")
    hint = " (a scheduler started with --protocol tls resets plain tcp:// connections: connect with tls:// and a client certificate)" if address.startswith("tcp://") and "reset" in reason.lower() else ""
    return TuneflowError(f"Cannot reach the Dask scheduler at {address}: {reason}{hint}.", "check --dask-address (tcp://HOST:8786 or tls://HOST:8786) and that the scheduler runs.")


def _ssl_reason(exc: BaseException) -> str:
    """The most telling message of `exc` and its causes (an ssl error's own where there is one),
    without distributed's `in <TLS (closed) local=... remote=...>: ` prefix and OpenSSL's source line."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    ssl_errors = [e for e in chain if isinstance(e, ssl.SSLError)]
    text = str(ssl_errors[0]) if ssl_errors else next((str(e) for e in chain if str(e)), type(exc).__name__)
    return re.sub(r"in <[^>]*>: |\s*\(_ssl\.c:\d+\)", "", text).strip()
