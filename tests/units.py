"""What flows.steps.trial_task does, without Prefect, for loop-level tests of rungs and PBT: run a
unit in this process on the real engine, keep its checkpoint and model in the store, and log
every unit started (JSON lines) so a test can count rungs and segments across a crash.

`python -m tests.units rungs|pbt ...` runs a study in a fresh process; `--crash-at` kills that
process (os._exit, as a SIGKILL would) when the named unit starts.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tasks import objectstore
from tasks.contracts import DatasetManifest, Fidelity, Pruner, TrialRequest, trial_request
from tasks.engine import resident
from tasks.problem import objective_params
from tasks.tuning.rungs import Unit

SPACE = {"learning_rate": {"type": "float", "low": 0.05, "high": 0.3}, "max_depth": {"type": "int", "low": 2, "high": 6}, "max_bin": 64}


def params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


class LocalUnits:
    def __init__(self, template: TrialRequest, store: str, log: Path, crash_at: tuple[int, int] | None = None, workers: int = 2) -> None:
        self.template, self.store, self.log, self.crash_at = template, store, log, crash_at
        self.pool = cf.ThreadPoolExecutor(workers)

    def run_unit(self, number: int, params: dict[str, Any], unit: Unit) -> cf.Future:
        return self.pool.submit(self._run, number, unit.request(self.template.for_trial(number, params)), unit.rung.index, params)

    def _run(self, number: int, request: TrialRequest, index: int, params: dict[str, Any]) -> dict[str, Any]:
        with self.log.open("a") as f:
            f.write(json.dumps({"number": number, "unit": index, "params": params_key(params), "pid": os.getpid(), "resume_from": request.resume_from}) + "\n")
        if self.crash_at == (number, index):
            os._exit(9)  # the run dies in the middle of this unit
        result = resident.run_trial(request)
        if request.checkpoint_uri:
            objectstore.write_bytes_atomic(request.checkpoint_uri, result.checkpoint_ubj, {})
        model_uri = objectstore.join(self.store, "models", f"{number}-{index}.ubj")
        objectstore.write_bytes_atomic(model_uri, result.model_ubj, {})
        return {"value": result.value, **result.summary(), "model_uri": model_uri, "checkpoint_uri": request.checkpoint_uri, "history": list(result.history)}


def template(manifest: DatasetManifest, max_rounds: int, early_stopping_rounds: int | None = None) -> TrialRequest:
    return trial_request(manifest, {**objective_params("binary", 2, "auc"), "seed": 0}, device="cpu", nthread=1,
                         num_boost_round=max_rounds, early_stopping_rounds=early_stopping_rounds)


def main(argv: list[str] | None = None) -> None:
    from tasks.tuning.liveness import recover_stale_trials  # noqa: F401  (loaded before the clock starts)
    from tasks.tuning.loop import run_study
    from tasks.tuning.pbt import PopulationTraining
    from tasks.tuning.results import checkpoint_path
    from tasks.tuning.rungs import RungScheduler, ladder, make_pruner
    from tasks.tuning.studies import open_study

    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["rungs", "pbt"])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--study", default="units")
    ap.add_argument("--n-trials", type=int, default=4)
    ap.add_argument("--max-rounds", type=int, default=90)
    ap.add_argument("--population", type=int, default=3)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--crash-at", default=None, help="NUMBER:UNIT")
    ap.add_argument("--stale-after", type=float, default=2.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    manifest = objectstore.read_json(a.manifest)
    crash = tuple(int(x) for x in a.crash_at.split(":")) if a.crash_at else None
    units = LocalUnits(template(manifest, a.max_rounds), a.store, Path(a.log), crash)  # type: ignore[arg-type]
    if a.mode == "rungs":
        rungs = ladder(Fidelity.ROUNDS, Pruner.MEDIAN, a.max_rounds)
        study = open_study(a.storage, a.study, "maximize", 0, make_pruner(Pruner.MEDIAN, rungs))
        scheduler = RungScheduler(study, rungs, units.run_unit, lambda n, r: checkpoint_path(a.store, a.study, n, r))
        outcome = run_study(study, SPACE, n_trials=a.n_trials, timeout=None, parallelism=2, submit=lambda n, p: None,
                            start=scheduler.start, advance=scheduler.advance, heartbeat_s=0.5, stale_after_s=a.stale_after)
    else:
        study = open_study(a.storage, a.study, "maximize", 0)
        outcome = PopulationTraining(
            study, SPACE, population=a.population, segments=a.segments, max_rounds=a.max_rounds, parallelism=2,
            run_segment=units.run_unit, checkpoint_path=lambda m, s: checkpoint_path(a.store, a.study, 10_000 + m, s),
            state_uri=objectstore.join(a.store, "pbt-state.json"), storage_options={}, seed=0, log=lambda line: print(line, flush=True),
        ).run()
    Path(a.out).write_text(json.dumps({"completed": outcome.completed, "pruned": outcome.pruned, "recovered": outcome.recovered, "best": outcome.best_value}))


if __name__ == "__main__":
    main()
