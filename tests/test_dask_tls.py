"""`tuneflow run --dask-address tls://...` on a real TLS Dask cluster, with certificates made here.

A temporary CA signs one certificate that the scheduler, the worker and the client all use
(`dask scheduler --protocol tls --tls-ca-file --tls-cert --tls-key`, `dask worker` likewise, started
as subprocesses from the venv's `dask` CLI); a second, rogue CA signs a certificate the scheduler
must refuse. The client reads distributed's own TLS settings (DASK_DISTRIBUTED__COMM__TLS__*):
tuneflow has none of its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port, make_csv

BIN = Path(sys.executable).parent


def make_certificates(folder: Path, name: str) -> dict[str, Path]:
    """A CA and one certificate it signs (server and client use; SAN 127.0.0.1, localhost), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5), not_valid_after=now + datetime.timedelta(days=1))

    def builder(subject, issuer, key):
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
        return b.not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (builder(ca_name, ca_name, ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


def tls_env(certs: dict[str, Path]) -> dict[str, str]:
    """distributed's own client TLS settings, as environment variables."""
    return {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs["ca"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs["cert"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs["key"]),
    }


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TUNEFLOW_", "DASK_"))}
    return {**env, "TUNEFLOW_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else f"({path} missing)"


@pytest.fixture
def tls_cluster(tmp_path: Path):
    """A TLS scheduler and one worker, as `dask` CLI subprocesses; yields (address, cluster certificates)."""
    from distributed import Client
    from distributed.security import Security

    certs = make_certificates(tmp_path / "pki", "tuneflow-cluster")
    tls = ["--tls-ca-file", str(certs["ca"]), "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
    port = _free_port()
    address = f"tls://127.0.0.1:{port}"
    env = _env(tmp_path)
    procs: list[subprocess.Popen] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker")}
    try:
        with logs["scheduler"].open("w") as log:
            procs.append(subprocess.Popen([str(BIN / "dask"), "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port),
                                           "--dashboard-address", ":0", *tls], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        with logs["worker"].open("w") as log:
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1", "--dashboard-address", ":0",
                                           "--no-nanny", *tls], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        security = Security(tls_ca_file=str(certs["ca"]), tls_client_cert=str(certs["cert"]), tls_client_key=str(certs["key"]), require_encryption=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(address, security=security, timeout="5s") as client:
                    client.wait_for_workers(1, timeout=60)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    pytest.fail("the TLS cluster did not start\n" + "\n".join(f"--- {n}\n{_tail(p)}" for n, p in logs.items()))
                time.sleep(1)
        yield address, certs
    finally:
        for proc in reversed(procs):  # the worker first, while its scheduler still answers, then the scheduler
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "tuneflow"), *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return lines[0]


@pytest.mark.timeout(420)
def test_tuning_on_a_tls_cluster_and_refusals_without_the_right_certificate(tls_cluster, tmp_path: Path) -> None:
    address, certs = tls_cluster
    csv = make_csv(tmp_path / "data" / "churn.csv", 2000)
    run = ("run", "--data", str(csv), "--target", "churned", "--row-key", "customer_id", "--n-trials", "2", "--parallelism", "1",
           "--max-rounds", "20", "--sampler", "random", "--warm-start", "off", "--dask-address", address)

    # the cluster's certificate, from distributed's own settings: a real (small) tuning completes
    ok = _cli(*run, env=_env(tmp_path, **tls_env(certs)))
    assert ok.returncode == 0, f"--- stdout\n{ok.stdout[-3000:]}\n--- stderr\n{ok.stderr[-4000:]}"
    assert "Done." in ok.stdout and "2 trials this run" in ok.stdout and "(alias champion)" in ok.stdout

    # no certificate at all: refused before anything starts, naming the settings
    line = _one_error_line(_cli(*run, env=_env(tmp_path)))
    assert "asks for TLS" in line and "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in line and "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT" in line

    # a certificate from another CA: the scheduler rejects it during the handshake
    rogue = make_certificates(tmp_path / "rogue", "rogue")
    line = _one_error_line(_cli(*run, env=_env(tmp_path, **tls_env({**rogue, "ca": certs["ca"]}))))
    # (the reason is OpenSSL's alert, or under TLS 1.3 sometimes only the connection closing)
    assert "rejected this client's TLS certificate" in line and ("UNKNOWN_CA" in line or "EOF" in line), line


def test_plain_and_mistrusting_clients_get_one_clear_error(tls_cluster, tmp_path: Path) -> None:
    """The same checks in-process, without a flow run: each failure is a TuneflowError naming the cause."""
    import dask

    from tasks.engine.cluster import dask_client
    from tasks.errors import TuneflowError

    address, certs = tls_cluster
    rogue = make_certificates(tmp_path / "rogue", "rogue")
    plain = address.replace("tls://", "tcp://")

    def error(addr: str, **config: str) -> str:
        with dask.config.set({"distributed.comm.tls." + k: v for k, v in config.items()}):
            with pytest.raises(TuneflowError) as info:
                with dask_client(addr, 1):
                    pass
        return str(info.value)

    assert "connect with tls://" in error(plain)
    assert "does not trust" in error(address, **{"ca-file": str(rogue["ca"]), "client.cert": str(certs["cert"]), "client.key": str(certs["key"])})
    assert "does not load" in error(address, **{"ca-file": str(certs["ca"]), "client.cert": str(certs["cert"]), "client.key": str(rogue["key"])})
    assert "no such file" in error(address, **{"ca-file": str(tmp_path / "missing.pem"), "client.cert": str(certs["cert"])})
    with dask.config.set({"distributed.comm.tls.ca-file": str(certs["ca"]), "distributed.comm.tls.client.cert": str(certs["cert"]),
                          "distributed.comm.tls.client.key": str(certs["key"])}):
        with dask_client(address, 1) as client:
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
