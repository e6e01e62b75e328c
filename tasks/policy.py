"""The input policy: where path-like run parameters may point, which names they may give, and no
credentials among them. Parameters arrive from outside (a deployment run's `-p`, an event's
payload, a zones file), so every flow checks its own at the top and the CLI checks them while
planning; a refusal is one TuneflowError before anything is read or written.

Settings (TUNEFLOW_*, tasks/settings.py), read on every check:
- ALLOWED_SCHEMES (default file,s3,sqlite,postgresql,mysql): a location's scheme (a plain path is
  `file`; `postgresql+psycopg2` is `postgresql`) must be listed. So http(s)://, memory://, ssh://,
  github://, data: and every other fsspec protocol are refused unless listed.
- ALLOWED_ROOTS (default empty: no root restriction, in the CLI and in deployment runs alike; a
  deployment run logs a warning then): a comma list of folders, `s3://bucket[/prefix]` and
  `postgresql://host[:port][/db]` (or mysql://); every location must lie under one. A local path
  is compared after resolving symbolic links and '..': a link leading out of the roots is refused.
  A remote path with a '..' segment is refused. A glob is judged by its fixed part.
- ALLOW_CHAINED_URLS (default false): fsspec chains `a::b` are refused; allowed, each link's
  scheme must be listed and the last one (the storage) must lie under a root.
Names: dataset/zone names, study names (also `warm_start`) and model names (tasks/names.py).
Credentials: a file location carrying a password is always refused; the study storage URL with a
password is refused in a run started by a deployment (its parameters are stored on the Prefect
server) and accepted with a warning elsewhere (the CLI keeps the password out of the flow's
parameters: tasks.redact.hold_password). Settings themselves (TUNEFLOW_STORE, TUNEFLOW_STORAGE,
...) are the operator's, not parameters: they are not checked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from tasks.errors import TuneflowError
from tasks.names import check_model_name, check_name, check_study_name
from tasks.redact import has_password, hold_password, install_log_redaction, redact

Kind = Literal["file", "storage"]
DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "mysql"})
SCHEME_ALIASES = {"local": "file", "journal": "file", "postgres": "postgresql"}
MAX_LOCATION = 4096
GLOB_CHARS = "*?["
logger = logging.getLogger("tuneflow.policy")


@dataclass(frozen=True)
class InputPolicy:
    schemes: frozenset[str]
    roots: tuple[str, ...] = ()  # as given (normalised by _local_root / _remote_root when compared)
    allow_chained: bool = False


@dataclass
class CheckedInputs:
    """What passed: the storage URL to hand on as a parameter (its password held in this process
    when `hold` was asked), and the warnings to show."""

    storage: str | None
    warnings: list[str] = field(default_factory=list)


def current_policy() -> InputPolicy:
    """The policy of this process's settings (environment), read now."""
    from tasks.settings import Settings  # not get_settings(): that loads credential blocks

    settings = Settings()
    schemes = frozenset(SCHEME_ALIASES.get(s, s) for s in _split(settings.allowed_schemes.lower()))
    return InputPolicy(schemes, tuple(_split(settings.allowed_roots)), settings.allow_chained_urls)


def check_run_inputs(
    *,
    data: str | None = None,
    space: str | None = None,
    expectations: str | None = None,
    enqueue: str | None = None,
    store: str | None = None,
    storage: str | None = None,
    zones_file: str | None = None,
    study_name: str | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    warm_start: str | None = None,
    deployment: bool = False,
    cli: bool = False,
    hold: bool = False,
    policy: InputPolicy | None = None,
) -> CheckedInputs:
    """Check a run's parameters against the policy; raise TuneflowError at the first refusal.
    `deployment`: the run was started by a deployment (stricter on credentials). `cli`: name
    options as `--store`, not `store`. `hold`: return the storage URL without its password, which
    stays in this process (the CLI: the flow's parameters never see it)."""
    policy = policy or current_policy()
    label = (lambda n: "--" + n.replace("_", "-")) if cli else (lambda n: n)
    warnings: list[str] = []
    for name, value in (("data", data), ("space", space), ("expectations", expectations), ("enqueue", enqueue), ("store", store),
                        ("zones_file", zones_file)):
        if value is not None:
            check_location(value, label(name), policy)
    if storage is not None:
        check_location(storage, label("storage"), policy, kind="storage")
        if has_password(storage):
            if deployment:
                raise TuneflowError(
                    f"The {label('storage')} parameter {redact(storage)} carries a password, and this run was started by a deployment, "
                    "whose parameters the Prefect server stores and shows.",
                    "drop the password from the URL and give it through PGPASSWORD or TUNEFLOW_STORAGE_PASSWORD_BLOCK on the worker, "
                    "or set the whole URL as TUNEFLOW_STORAGE there and leave the parameter out.",
                )
            warnings.append(
                f"the {label('storage')} URL carries a password: "
                + ("it stays in this process, the flow run's parameters get the URL without it" if hold
                   else "Prefect stores flow run parameters on its server, the password with them")
                + "; prefer PGPASSWORD, TUNEFLOW_STORAGE_PASSWORD_BLOCK or TUNEFLOW_STORAGE (README, 'Input policy and secrets')."
            )
            if hold:
                storage = hold_password(storage)
    if study_name is not None:
        check_study_name(study_name, label("study_name"))
    if warm_start is not None and warm_start not in ("auto", "off"):
        check_study_name(warm_start, f"{label('warm_start')} study")
    if model_name is not None:
        check_model_name(model_name, label("model_name"))
    if dataset_name is not None:
        check_name(dataset_name, label("dataset_name"))
    given = any(v is not None for v in (data, space, expectations, enqueue, store, storage, zones_file))
    if deployment and given and not policy.roots:
        warnings.append("TUNEFLOW_ALLOWED_ROOTS is not set: this deployment run's locations may point anywhere the worker can reach "
                        "(with an allowed scheme); set it in the worker's environment.")
    return CheckedInputs(storage, warnings)


def check_flow_inputs(**parameters: str | None) -> bool:
    """At the top of a flow: log redaction on, `parameters` checked (check_run_inputs), warnings
    logged to the flow run. Returns whether the run was started by a deployment."""
    install_log_redaction()
    deployment = started_by_deployment()
    checked = check_run_inputs(**parameters, deployment=deployment)  # type: ignore[arg-type]
    if checked.warnings:
        from prefect import get_run_logger

        log = get_run_logger()
        for warning in checked.warnings:
            log.warning(warning)
    return deployment


def check_text(value: object, what: str, max_length: int = 256) -> str:
    """A free-text parameter that is logged or shown (a target column, an arrival id): a string of
    at most `max_length` characters without control characters (no forged log lines)."""
    if not isinstance(value, str) or len(value) > max_length or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise TuneflowError(f"Bad {what} {redact(repr(value))[:80]}.", f"give at most {max_length} printable characters.")
    return value


def started_by_deployment() -> bool:
    """Whether this flow run (or the flow run it is nested in) belongs to a deployment: a worker or
    a served deployment started this process for it, or the run has a deployment id."""
    if os.environ.get("PREFECT__FLOW_RUN_ID"):
        return True
    try:
        from prefect.runtime import deployment, flow_run

        return bool(deployment.id) or bool(flow_run.parent_deployment_id)
    except Exception:  # no run context, no API
        return False


def check_location(value: object, what: str, policy: InputPolicy | None = None, *, kind: Kind = "file") -> str:
    """Check one location (a file, folder, glob or prefix; `kind="storage"`: an Optuna storage URL
    or journal path) against the policy; returns it unchanged."""
    policy = policy or current_policy()
    if not isinstance(value, str) or not value.strip():
        raise TuneflowError(f"Bad {what} {value!r}.", "give a path or URL.")
    shown = redact(value)[:300]
    if len(value) > MAX_LOCATION or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise TuneflowError(f"Bad {what} {shown!r}: control characters or over {MAX_LOCATION} characters.", "give a plain path or URL.")
    if kind == "file" and has_password(value):
        raise TuneflowError(f"The {what} location {shown} carries a password.",
                            "credentials come from the environment (AWS_*) or Prefect blocks (TUNEFLOW_S3_CREDENTIALS_BLOCK), never from a parameter.")
    links = value.split("::")
    if len(links) > 1:
        if not policy.allow_chained:
            raise TuneflowError(f"The {what} location {shown} is a chained URL ('::').",
                                "give a plain path or URL, or set TUNEFLOW_ALLOW_CHAINED_URLS=true where chains are intended.")
        for link in links[:-1]:
            _check_scheme(_scheme(link) if "://" in link else link.lower(), what, shown, policy)
    last = links[-1]
    scheme = _scheme(last)
    _check_scheme(scheme, what, shown, policy)
    if kind == "file" and scheme in DATABASE_SCHEMES:
        raise TuneflowError(f"The {what} location {shown} is a database URL, not a file, folder or prefix.", "give a path or an s3:// URL.")
    if kind == "storage" and scheme not in DATABASE_SCHEMES and scheme != "file":
        raise TuneflowError(f"The {what} location {shown} is not a study storage.", "use a journal file path, sqlite:///FILE or postgresql://USER@HOST/DB.")
    if policy.roots:
        _check_roots(last, scheme, what, shown, policy)
    return value


def _check_scheme(scheme: str, what: str, shown: str, policy: InputPolicy) -> None:
    if scheme not in policy.schemes:
        raise TuneflowError(f"The {what} location {shown} uses scheme {scheme!r}, which is not allowed (allowed: {', '.join(sorted(policy.schemes))}).",
                            "give a location with an allowed scheme, or add it to TUNEFLOW_ALLOWED_SCHEMES.")


def _scheme(location: str) -> str:
    """A location's scheme as the policy names it: a plain path is `file`, `postgresql+psycopg2` is `postgresql`."""
    if "://" in location:
        prefix = location.split("://", 1)[0]
        if len(prefix) > 1:  # 'C://x' is a Windows path (as fsspec reads it)
            base = prefix.lower().split("+", 1)[0]
            return SCHEME_ALIASES.get(base, base)
    if location.lower().startswith("data:"):  # fsspec's data: URLs have no '//'
        return "data"
    return "file"


def _check_roots(location: str, scheme: str, what: str, shown: str, policy: InputPolicy) -> None:
    allowed = ", ".join(redact(r) for r in policy.roots)
    fix = f"give a location under one of the allowed roots ({allowed}), or add its root to TUNEFLOW_ALLOWED_ROOTS."
    if scheme in ("postgresql", "mysql"):
        if not any(_database_under(location, root) for root in policy.roots):
            raise TuneflowError(f"The {what} database {shown} is outside the allowed roots.", fix)
        return
    if scheme in ("file", "sqlite"):
        path = _local_path(location, scheme)
        if path is None:  # sqlite:// in memory
            return
        lexical = os.path.abspath(path)
        real = os.path.realpath(lexical)
        roots = [r for r in (_local_root(root) for root in policy.roots) if r is not None]  # (as given, resolved)
        if any(_under(real, resolved) for _, resolved in roots):
            return
        if any(_under(lexical, given) or _under(lexical, resolved) for given, resolved in roots):
            raise TuneflowError(f"The {what} location {shown} leads through a symbolic link to {real}, outside the allowed roots.", fix)
        raise TuneflowError(f"The {what} location {shown} is outside the allowed roots.", fix)
    rest = location.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0] if "://" in location else location
    if any(part in ("..", ".") for part in rest.split("/")):
        raise TuneflowError(f"The {what} location {shown} has a '.' or '..' segment.", "give the location without them.")
    target = f"{scheme}://{_fixed_part(rest).strip('/')}"
    if not any(_under_remote(target, root) for root in policy.roots):
        raise TuneflowError(f"The {what} location {shown} is outside the allowed roots.", fix)


def _local_path(location: str, scheme: str) -> str | None:
    if scheme == "sqlite":
        path = location.split("://", 1)[1][1:] if "://" in location else location  # sqlite:///rel.db, sqlite:////abs.db
        return path.split("?", 1)[0] or None
    path = location.split("://", 1)[1] if "://" in location and len(location.split("://", 1)[0]) > 1 else location
    return _fixed_part(path) or "."


def _fixed_part(path: str) -> str:
    """A glob's folder before its first wildcard ('data/2024-*/x.csv' -> 'data'); other paths as they are."""
    cut = min((path.index(c) for c in GLOB_CHARS if c in path), default=None)
    if cut is None:
        return path
    head = path[:cut]
    return head.rsplit("/", 1)[0] if "/" in head else ""


def _local_root(root: str) -> tuple[str, str] | None:
    """A folder root as given (absolute) and resolved (links followed); None for a remote root."""
    if _scheme(root) != "file":
        return None
    path = os.path.abspath(root.split("://", 1)[1] if "://" in root else root)
    return path, os.path.realpath(path)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _under_remote(target: str, root: str) -> bool:
    scheme = _scheme(root)
    if scheme in ("file", "postgresql", "mysql", "sqlite"):
        return False
    base = f"{scheme}://{root.split('://', 1)[1].strip('/')}"
    return target == base or target.startswith(base + "/")


def _database_under(location: str, root: str) -> bool:
    """Same database scheme, host and (where the root names them) port and database."""
    if _scheme(root) != _scheme(location):
        return False
    try:
        here, there = urlsplit(location), urlsplit(root)
        here_port, there_port = here.port, there.port
    except ValueError:
        return False
    if (here.hostname or "") != (there.hostname or ""):
        return False
    if there_port is not None and here_port != there_port:
        return False
    db = there.path.strip("/")
    return not db or here.path.strip("/") == db


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def check_cli_inputs(*, warn: Callable[[str], None], **parameters: str | None) -> str | None:
    """`tuneflow run`'s hook: log redaction on, `parameters` checked with option names (--store);
    returns the --storage URL to pass to the flow, without its password (held in this process)."""
    install_log_redaction()
    checked = check_run_inputs(**parameters, cli=True, hold=True)  # type: ignore[arg-type]
    for warning in checked.warnings:
        warn(warning)
    return checked.storage
