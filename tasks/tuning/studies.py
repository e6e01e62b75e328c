"""Durable study storage and opening (or resuming) a study."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from tasks.errors import TuneflowError
from tasks.redact import with_password

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storage for sqlite:// and postgresql:// URLs, a journal file for anything else. A URL
    whose password the CLI held back (tasks.redact.hold_password) gets it back here."""
    url = with_password(url)
    if "://" in url and not url.startswith(("journal://", "file://")):
        if not url.startswith(("sqlite", "postgresql", "mysql")):
            raise TuneflowError(f"Unsupported study storage URL {url}.", "use a journal file path, sqlite:///FILE or postgresql://USER@HOST/DB (the password in PGPASSWORD).")
        try:
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=None)
        except Exception as exc:  # SQLAlchemy raises many kinds; all mean the same to the user
            raise TuneflowError(f"Cannot open study storage {url}: {str(exc).splitlines()[0]}.", "check that the database is running and the URL is right.") from exc
    path = Path(journal_path(url))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def is_journal(url: str) -> bool:
    return "://" not in url or url.startswith(("journal://", "file://"))


def journal_path(url: str) -> str:
    return url.split("://", 1)[-1]


def space_hash(space: Any) -> str:
    """A short hash of a search space (a `SearchSpace` or a plain mapping)."""
    body = space.to_json() if hasattr(space, "to_json") else space
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]


def default_study_name(dataset: str, fp: str, task: str, metric: str, space: Any, costs: tuple[str, ...] = ()) -> str:
    """Same data, problem, space and objectives -> same study, so re-running continues it."""
    name = f"{dataset}-{fp[:8]}-{task}-{metric}-{space_hash(space)}"
    return name + "".join(f"-{c}" for c in costs)


def open_study(
    storage_url: str,
    name: str,
    direction: str | list[str],
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None,
) -> optuna.Study:
    """The study `name`, created or resumed; its pruner and sampler are this run's (Optuna stores
    neither). `direction` is a list for a multi-objective study; `sampler(seed)` builds the sampler
    (default: multivariate TPE)."""
    directions = [direction] if isinstance(direction, str) else list(direction)
    make = sampler or _default_sampler
    study = optuna.create_study(
        storage=open_storage(storage_url), study_name=name, directions=directions, sampler=make(seed), load_if_exists=True,
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        # A resumed study re-seeds its sampler past the trials it has: with the run's seed alone a
        # second run would draw the first run's random start-up configurations again.
        study.sampler = make(seed + existing)
    found = [d.name.lower() for d in study.directions]
    if found != directions:
        raise TuneflowError(
            f"Study '{name}' exists with direction {', '.join(found)}, not {', '.join(directions)}.",
            "use another --study-name, or the metric and --objectives the study was created with.",
        )
    return study


def _default_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)


def enqueue_configs(study: optuna.Study, configs: list[dict[str, Any]]) -> None:
    """Queue configurations to be asked first; one already queued or tried is not queued again."""
    for params in configs:
        study.enqueue_trial(params, skip_if_exists=True)
