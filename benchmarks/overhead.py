"""Per-trial orchestration overhead: 200 no-op trials through tuneflow, Optuna and Ray Tune.

    .venv/bin/python benchmarks/overhead.py                  # 200 trials each, 2 in flight, every tool
    .venv/bin/python benchmarks/overhead.py --trials 200 --tools tuneflow,optuna-journal --out-dir DIR

tuneflow runs its real machinery: a Prefect @flow with the flow's ThreadPoolTaskRunner, a
LocalCluster from tasks.engine.cluster.dask_client, tasks.tuning.studies.open_study (journal file,
the flow's TPE sampler) and tasks.tuning.loop.run_study, submitting the flow's own
`flows.steps.trial_task` (Prefect task -> ResidentTrainer.run -> client.submit(run_trial) on a Dask
worker -> model write -> tell) with `trial_request(manifest_stub, noop_value=0.0)`: the engine
returns at once with an empty model, which trial_task writes like any other. The flow's
`artifacts.Leaderboard` listens to the events. Optuna: study.optimize(n_jobs=2) with an objective
that samples the same space and returns 0, on a journal file as tuneflow uses (`optuna-journal`)
and in memory (`optuna`, Optuna's default). Ray Tune: a function trainable that reports 0, 1 CPU
per trial, 2 CPUs.

Per trial: latency (tuneflow/Optuna: ask -> tell, from the study's start/complete times; Ray:
trial start -> complete, from a Tune callback) as median and mean; wall / trials (throughput
with 2 in flight); and the storage writes: every call of Optuna's JournalFileBackend.append_logs
(one locked, fsync'd append to the journal file) and the operations it carried, counted in the
process that runs the study (heartbeat writes included). A breakdown of tuneflow's per-trial cost
follows: each component timed alone, one at a time, in the same flow and cluster; then one
trial's path step by step.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TOOLS = ("tuneflow", "optuna", "optuna-journal", "ray")
TARGET_MS = 30.0  # issue 7: median latency per no-op trial at parallelism 2


class JournalWrites:
    """Counts the appends to Optuna journal files in this process while active (all threads):
    calls of append_logs on JournalFileBackend or any journal backend class derived from
    Optuna's (each one lock + write + fsync for the file backend) and the operations they carry,
    by kind. A subclass calling its parent's append_logs counts once."""

    def __init__(self) -> None:
        self.appends = 0
        self.ops: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.inside = threading.local()
        self.patched: list[tuple[type, Any]] = []

    def __enter__(self) -> JournalWrites:
        from optuna.storages.journal import BaseJournalBackend
        from optuna.storages.journal._storage import JournalOperation

        def wrapped(orig: Any) -> Any:
            def append_logs(backend: Any, logs: list[dict[str, Any]]) -> None:
                if getattr(self.inside, "on", False):
                    return orig(backend, logs)
                with self.lock:
                    self.appends += 1
                    for log in logs:
                        self.ops[JournalOperation(log["op_code"]).name] += 1
                self.inside.on = True
                try:
                    return orig(backend, logs)
                finally:
                    self.inside.on = False

            return append_logs

        todo = list(BaseJournalBackend.__subclasses__())
        while todo:
            cls = todo.pop()
            todo += cls.__subclasses__()
            if "append_logs" in cls.__dict__:
                self.patched.append((cls, cls.__dict__["append_logs"]))
                cls.append_logs = wrapped(cls.__dict__["append_logs"])
        return self

    def __exit__(self, *exc: Any) -> None:
        for cls, orig in reversed(self.patched):
            cls.append_logs = orig

    def per_trial(self, trials: int) -> dict[str, Any]:
        n = max(1, trials)
        return {
            "appends_total": self.appends, "appends_per_trial": round(self.appends / n, 2),
            "ops_per_trial": round(sum(self.ops.values()) / n, 2),
            "ops_by_kind_per_trial": {k: round(v / n, 2) for k, v in sorted(self.ops.items())},
        }


def _timeit(fn: Any, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        times.append(time.perf_counter() - s)
    return common.stats_ms(times)


def _latencies(trials: list[Any]) -> list[float]:
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]


def manifest_stub(uri: str) -> dict[str, Any]:
    """A DatasetManifest with no data: a no-op request never reads it."""
    empty = {"rows": 0, "bytes": 0, "files": []}
    return {
        "format": "tuneflow.dataset/1", "name": "noop", "fingerprint": "noop", "uri": uri, "created_at": "", "target": "y",
        "task": "binary", "features": [], "classes": ["0", "1"], "row_key": None, "split": {},
        "splits": {"train": dict(empty), "valid": dict(empty), "test": dict(empty)}, "total_rows": 0, "total_bytes": 0,
        "sources": [], "shard_code_version": "", "shard_seconds": 0.0,
    }


def run_tuneflow(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = common.fresh_home(work / f"home-{uuid.uuid4().hex[:8]}")
    import optuna
    from prefect import flow, task
    from prefect.cache_policies import NONE as NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows import artifacts, steps
    from tasks import objectstore
    from tasks.contracts import Device, Placement, trial_request
    from tasks.engine.cluster import dask_client
    from tasks.engine.placement import ResidentTrainer
    from tasks.tuning import search_space
    from tasks.tuning.loop import run_study
    from tasks.tuning.records import RESULT_ATTR, result_of
    from tasks.tuning.results import model_path
    from tasks.tuning.studies import open_study

    store = str(home / "store")
    storage_url = str(home / "optuna.journal")
    template = trial_request(manifest_stub(objectstore.join(store, "datasets", "noop")), {}, placement=Placement.TRIAL, device=Device.CPU, noop_value=0.0)

    @task(name="empty", cache_policy=NO_CACHE, **steps.RETRY)
    def empty_task(number: int, request: Any, trainer: Any, model_uri: str, timeout_s: float | None) -> dict:
        return {"value": 0.0}

    @flow(name="tuneflow-overhead", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
    def overhead_flow() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with dask_client(None, a.parallelism, Device.CPU) as client:
            client.run(lambda: __import__("tasks.engine.resident"))  # workers import the engine before the clock starts
            trainer = ResidentTrainer(client)

            def submit_to(study_name: str) -> Any:
                return lambda number, params: steps.trial_task.submit(
                    number, template.for_trial(number, params), trainer, model_path(store, study_name, number), None,
                )

            the_study = open_study(storage_url, "overhead", "maximize", 0)
            with common.TreeMonitor(interval=0.5) as mon, JournalWrites() as writes:
                outcome = run_study(
                    the_study, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                    submit=submit_to(the_study.study_name), on_event=artifacts.Leaderboard("maximize"),
                )
            trials = the_study.get_trials(deepcopy=False)
            lat = _latencies(trials)
            out.update({
                "tune_s": round(outcome.seconds, 3), "trials": outcome.completed, "failed": outcome.failed,
                "latency": common.stats_ms(lat), "latency_first5_ms": [round(x * 1000, 1) for x in lat[:5]],
                "latency_last_50": common.stats_ms(lat[-50:]), "worker_body": common.stats_ms([result_of(t).get("seconds", 0.0) for t in trials]),
                "noop_results": sum(bool(result_of(t).get("noop")) for t in trials), "storage_writes": writes.per_trial(outcome.completed),
                "monitor": mon.report(),
            })

            # Breakdown: each piece alone, sequentially, in this flow and cluster.
            n = a.breakdown_n
            b: dict[str, Any] = {}
            side = open_study(storage_url, "overhead-breakdown", "maximize", 0)
            side.add_trials([t for t in trials if t.state.name == "COMPLETE"])  # the same history as at the end of the run
            asked: list[Any] = []
            info = {"noop": True, "seconds": 0.0, "model_uri": "x", "attempt": 1, "placement": "trial"}

            def ask() -> None:
                t = side.ask()
                search_space.suggest(t, search_space.DEFAULT_SPACE)
                asked.append(t)

            def tell() -> None:
                t = asked.pop()
                t.set_user_attr(RESULT_ATTR, info)
                side.tell(t, 0.0)

            request = template.for_trial(0, {})
            b["ask + suggest (journal, TPE)"] = _timeit(ask, n)
            b["result attr + tell (journal)"] = _timeit(tell, n)
            rnd = open_study(storage_url, "overhead-random", "maximize", 0)
            rnd.sampler = optuna.samplers.RandomSampler(seed=0)
            b["ask + suggest with RandomSampler (journal)"] = _timeit(lambda: search_space.suggest(rnd.ask(), search_space.DEFAULT_SPACE), n)
            b["Prefect task, empty body: submit().result()"] = _timeit(lambda: empty_task.submit(0, request, trainer, "x", None).result(), n)
            b["Dask: ResidentTrainer.run(no-op request)"] = _timeit(lambda: trainer.run(request), n)
            b["model write (write_bytes_atomic, 0 bytes)"] = _timeit(lambda: objectstore.write_bytes_atomic(objectstore.join(store, "x", f"{uuid.uuid4().hex}.ubj"), b""), n)
            b["trial_task end to end: submit().result()"] = _timeit(
                lambda: steps.trial_task.submit(0, request, trainer, objectstore.join(store, "x", "x.ubj"), None).result(), n)
            out["breakdown"] = b
            with common.TreeMonitor(interval=0.5) as mon2:
                out["timeline"] = instrumented_pass(a, storage_url, submit_to)
            out["timeline"]["other_processes_cores"] = mon2.report()["other_processes_cores"]
            if a.what_if:
                out["what_if"] = what_if_passes(a, storage_url, submit_to)
        return out

    started = time.perf_counter()
    out = overhead_flow()
    out["total_s"] = round(time.perf_counter() - started, 2)
    out["tool"] = "tuneflow"
    out["how"] = f"Prefect flow + run_study + flow's trial_task (no-op request) on LocalCluster ({a.parallelism} workers), journal file"
    return out


def instrumented_pass(a: argparse.Namespace, storage_url: str, submit_to: Any) -> dict[str, Any]:
    """A second no-op study, same machinery, with timestamps taken around each step of every trial
    (ask, suggest, submit, the trial task's body, the future's completion, set_user_attr, tell,
    events), on whichever thread runs it. Only reads clocks: the steps themselves are unchanged.

    Time is summed per thread: the loop thread (the one that calls run_study), the heartbeat
    thread, and the others (Prefect's task threads and the future callbacks, where the loop may
    tell a finished trial)."""
    import optuna

    from flows import artifacts, steps
    from tasks.tuning import loop as loop_module
    from tasks.tuning import search_space
    from tasks.tuning.studies import open_study

    main = threading.get_ident()
    marks: dict[int, dict[str, float]] = collections.defaultdict(dict)
    spent: dict[str, dict[str, float]] = {"loop": collections.defaultdict(float), "heartbeat": collections.defaultdict(float), "other": collections.defaultdict(float)}
    restore: list[tuple[Any, str, Any]] = []
    clock = time.perf_counter
    lock = threading.Lock()

    def bucket() -> str:
        if threading.get_ident() == main:
            return "loop"
        return "heartbeat" if threading.current_thread().name == "tuneflow-heartbeat" else "other"

    def wrap(owner: Any, name: str, category: str, mark: Any = None) -> None:
        orig = getattr(owner, name)

        def timed(*args: Any, **kw: Any) -> Any:
            start = clock()
            try:
                res = orig(*args, **kw)
            finally:
                end = clock()
                with lock:
                    spent[bucket()][category] += end - start
            if mark:
                mark(args, res, start, end)
            return res

        setattr(owner, name, timed)
        restore.append((owner, name, orig))

    def on_ask(args: Any, trial: Any, start: float, end: float) -> None:
        marks[trial.number].update(ask0=start, ask1=end)

    def on_tell(args: Any, res: Any, start: float, end: float) -> None:
        t = args[1]
        marks[t if isinstance(t, int) else t.number].update(tell0=start, tell1=end)

    wrap(optuna.Study, "ask", "study.ask (sampler + new trial)", on_ask)
    wrap(optuna.Study, "tell", "study.tell", on_tell)
    wrap(optuna.trial.Trial, "set_user_attr", "trial.set_user_attr")
    wrap(search_space.SearchSpace, "suggest", "suggest (7 params)")  # the loop samples through its SearchSpace
    original_fn = steps.trial_task.fn

    def body(number: int, *rest: Any) -> dict:
        marks[number]["body0"] = clock()
        try:
            return original_fn(number, *rest)
        finally:
            marks[number]["body1"] = clock()

    steps.trial_task.fn = body
    the_study = open_study(storage_url, "overhead-instrumented", "maximize", 0)
    submit_trial = submit_to(the_study.study_name)

    def submit(number: int, params: dict) -> Any:
        marks[number]["submit0"] = s = clock()
        fut = submit_trial(number, params)
        marks[number]["submit1"] = e = clock()
        spent["loop"]["trial_task.submit"] += e - s
        # registered before the loop's own callback, so it runs first
        getattr(fut, "wrapped_future", fut).add_done_callback(lambda _: marks[number].__setitem__("done", clock()))
        return fut

    leaderboard = artifacts.Leaderboard("maximize")

    def on_event(event: Any) -> None:
        s = clock()
        leaderboard(event)
        with lock:
            spent[bucket()]["on_event (progress + leaderboard artifact)"] += clock() - s

    try:
        started = clock()
        outcome = loop_module.run_study(the_study, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                                        submit=submit, on_event=on_event)
        wall = clock() - started
    finally:
        steps.trial_task.fn = original_fn
        for owner, name, orig in reversed(restore):
            setattr(owner, name, orig)
    steps_ = {
        "ask": ("ask0", "ask1"), "suggest": ("ask1", "submit0"), "Prefect: submit -> task body starts": ("submit0", "body0"),
        "task body: Dask round trip + model write": ("body0", "body1"), "Prefect: body ends -> future done": ("body1", "done"),
        "future done -> tell starts (result attr)": ("done", "tell0"), "tell": ("tell0", "tell1"),
    }
    per_step = {}
    full = [m for m in marks.values() if all(k in m for k in ("ask0", "submit0", "body0", "body1", "done", "tell0", "tell1"))]
    for label, (x, y) in steps_.items():
        per_step[label] = common.stats_ms([m[y] - m[x] for m in full])
    per_step["latency ask -> tell done"] = common.stats_ms([m["tell1"] - m["ask0"] for m in full])
    n = max(1, outcome.completed)

    def per_trial(d: dict[str, float]) -> dict[str, float]:
        return {k: round(1000 * v / n, 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}

    busy = per_trial(spent["loop"])
    busy["main loop total, excluding waiting"] = round(sum(busy.values()), 2)
    busy["waiting and the rest of the loop"] = round(1000 * wall / n - busy["main loop total, excluding waiting"], 2)
    return {"trials": outcome.completed, "timed_trials": len(full), "wall_s": round(wall, 3), "wall_per_trial_ms": round(1000 * wall / n, 2),
            "per_trial_steps": per_step, "main_loop_ms_per_trial": busy,
            "other_threads_ms_per_trial": per_trial(spent["other"]), "heartbeat_ms_per_trial": per_trial(spent["heartbeat"])}


def what_if_passes(a: argparse.Namespace, storage_url: str, submit_to: Any) -> list[dict[str, Any]]:
    """The same no-op study again with one thing changed at a time, to size what is left:
    journal appends without fsync; Optuna storage in memory instead of the journal file (upper
    bound of what fewer/cheaper storage writes can save); Python's thread switch interval 0.5 ms
    instead of 5 ms (the flow thread, Prefect's worker threads, Dask's client and in-process
    scheduler share one GIL)."""
    import optuna
    import optuna.storages.journal._file as journal_file

    from flows import artifacts
    from tasks.tuning import search_space
    from tasks.tuning.loop import run_study
    from tasks.tuning.studies import open_study

    variants = [  # label, storage (journal | nosync | memory), switch interval
        ("as is (journal file, switch interval 5 ms)", "journal", None),
        ("journal appends without fsync", "nosync", None),
        ("Optuna storage in memory", "memory", None),
        ("switch interval 0.5 ms", "journal", 0.0005),
        ("in memory + switch interval 0.5 ms", "memory", 0.0005),
    ]
    rows = []
    for i, (label, storage, switch) in enumerate(variants):
        old = sys.getswitchinterval()
        if switch:
            sys.setswitchinterval(switch)
        if storage == "nosync":  # optuna's journal module sees an os whose fsync does nothing
            journal_file.os = types.SimpleNamespace(**{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "fsync": lambda fd: None})
        try:
            if storage != "memory":
                st = open_study(storage_url, f"overhead-whatif-{i}", "maximize", 0)
            else:
                st = optuna.create_study(study_name=f"overhead-whatif-{i}", direction="maximize",
                                         sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=8, multivariate=True))
            with common.TreeMonitor(interval=0.5) as mon:
                outcome = run_study(
                    st, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                    submit=submit_to(st.study_name), on_event=artifacts.Leaderboard("maximize"),
                )
        finally:
            sys.setswitchinterval(old)
            journal_file.os = os
        lat = _latencies(st.get_trials(deepcopy=False))
        rows.append({"variant": label, "trials": outcome.completed, "wall_per_trial_ms": round(1000 * outcome.seconds / max(1, outcome.completed), 2),
                     **{f"latency_{k}": v for k, v in common.stats_ms(lat).items()}, "other_processes_cores": mon.report()["other_processes_cores"]})
    return rows


def run_optuna(a: argparse.Namespace, work: Path, journal: bool) -> dict[str, Any]:
    import optuna

    from tasks.tuning.search_space import DEFAULT_SPACE, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if journal:  # the same storage as tuneflow's default: Optuna's JournalFileBackend
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(work / f"optuna-{uuid.uuid4().hex[:8]}.journal")))

    def objective(trial: optuna.Trial) -> float:
        suggest(trial, DEFAULT_SPACE)
        return 0.0

    study = optuna.create_study(direction="maximize", storage=storage)
    with common.TreeMonitor(interval=0.5) as mon, JournalWrites() as writes:
        s = time.perf_counter()
        study.optimize(objective, n_trials=a.trials, n_jobs=a.parallelism)
        wall = time.perf_counter() - s
    return {
        "tool": "optuna-journal" if journal else "optuna", "how": f"study.optimize(n_jobs={a.parallelism}), {'journal file' if journal else 'in-memory'} storage, TPE",
        "tune_s": round(wall, 3), "total_s": round(wall, 3), "trials": len(study.trials), "latency": common.stats_ms(_latencies(study.trials)),
        "storage_writes": writes.per_trial(len(study.trials)) if journal else None, "monitor": mon.report(),
    }


def run_ray(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    import ray
    from ray import tune

    starts: dict[str, float] = {}
    lat: list[float] = []

    class Timing(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            starts[trial.trial_id] = time.perf_counter()

        def on_trial_complete(self, iteration, trials, trial, **info):
            lat.append(time.perf_counter() - starts[trial.trial_id])

    def noop(config: dict) -> None:
        tune.report({"value": 0.0})

    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.perf_counter()
        ray.init(num_cpus=a.parallelism, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t1 = time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(noop, {"cpu": 1}),
            param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(num_samples=a.trials, max_concurrent_trials=a.parallelism),
            run_config=tune.RunConfig(name=f"overhead-{uuid.uuid4().hex[:6]}", storage_path=str(work / "ray_results"), verbose=0, callbacks=[Timing()]),
        )
        results = tuner.fit()
        t2 = time.perf_counter()
        ray.shutdown()
    return {
        "tool": "ray", "how": f"Tuner(function trainable reporting 0, cpu=1), max_concurrent_trials={a.parallelism}",
        "tune_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3), "trials": len(results), "latency": common.stats_ms(lat),
        "storage_writes": None, "monitor": mon.report(),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["tool"]: r for r in rows}
    tf = by.get("tuneflow")
    if not tf:
        return {}
    s: dict[str, Any] = {
        "tuneflow_median_ms": tf["latency"]["median_ms"], "tuneflow_mean_ms": tf["latency"]["mean_ms"],
        "tuneflow_wall_per_trial_ms": round(1000 * tf["tune_s"] / max(1, tf["trials"]), 2),
        "tuneflow_appends_per_trial": tf["storage_writes"]["appends_per_trial"],
        "target_ms": TARGET_MS, "target_met": tf["latency"]["median_ms"] <= TARGET_MS,
    }
    oj = by.get("optuna-journal")
    if oj:
        s["optuna_journal_median_ms"] = oj["latency"]["median_ms"]
        s["optuna_journal_appends_per_trial"] = oj["storage_writes"]["appends_per_trial"]
        s["tuneflow_over_optuna_journal_median"] = round(tf["latency"]["median_ms"] / oj["latency"]["median_ms"], 2) if oj["latency"]["median_ms"] else None
    return s


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["tools"]:
        w = r.get("storage_writes") or {}
        rows.append({
            "tool": r["tool"], "how": r["how"], "trials": r["trials"], "wall s": r["tune_s"],
            "wall/trial ms": round(1000 * r["tune_s"] / max(1, r["trials"]), 2),
            "latency median ms": r["latency"]["median_ms"], "latency mean ms": r["latency"]["mean_ms"],
            "latency p90 ms": r["latency"]["p90_ms"], "journal appends/trial": w.get("appends_per_trial"),
            "journal ops/trial": w.get("ops_per_trial"), "other CPU (cores)": r["monitor"]["other_processes_cores"],
        })
    text = common.header("Per-trial overhead, no-op trials", result["command"], result)
    text += common.md_table(rows)
    s = result.get("summary", {})
    if "tuneflow_median_ms" in s:
        text += (
            f"\ntuneflow median latency per no-op trial: **{s['tuneflow_median_ms']} ms** (target ≤ {s['target_ms']:g} ms: "
            f"{'met' if s['target_met'] else 'NOT met'}); wall per trial with {result['params']['parallelism']} in flight: "
            f"{s['tuneflow_wall_per_trial_ms']} ms; {s['tuneflow_appends_per_trial']} journal appends per trial."
        )
        if "optuna_journal_median_ms" in s:
            text += (
                f" Optuna's optimize(n_jobs={result['params']['parallelism']}) on the same journal storage: {s['optuna_journal_median_ms']} ms, "
                f"{s['optuna_journal_appends_per_trial']} appends per trial; tuneflow / Optuna = **{s['tuneflow_over_optuna_journal_median']}**."
            )
        text += "\n"
    kinds = [(r["tool"], r["storage_writes"]["ops_by_kind_per_trial"]) for r in result["tools"] if r.get("storage_writes")]
    if kinds:
        text += "\nJournal operations per trial, by kind (one append can carry several; heartbeats included):\n\n"
        names = sorted({k for _, by in kinds for k in by})
        text += common.md_table([{"tool": tool, **{k: by.get(k, 0) for k in names}} for tool, by in kinds], ["tool", *names])
    tf = next((r for r in result["tools"] if r["tool"] == "tuneflow"), None)
    if tf and tf.get("breakdown"):
        text += "\ntuneflow per-trial components, each timed alone (sequential, same flow and cluster):\n\n"
        text += common.md_table([{"component": k, **v} for k, v in tf["breakdown"].items()])
    if tf and tf.get("timeline"):
        tl = tf["timeline"]
        text += (
            f"\nOne trial's path, step by step (a second run of {tl['trials']} no-op trials with clocks read around each step; "
            f"wall per trial {tl['wall_per_trial_ms']} ms; other CPU {tl.get('other_processes_cores')} cores):\n\n"
        )
        text += common.md_table([{"step": k, **v} for k, v in tl["per_trial_steps"].items()])
        text += "\nThe loop thread's own work per trial (ms; it serves both slots, so it bounds throughput):\n\n"
        text += common.md_table([{"in the flow's ask/tell loop": k, "ms per trial": v} for k, v in tl["main_loop_ms_per_trial"].items()])
        others = {**{f"{k} (task threads, callbacks)": v for k, v in tl.get("other_threads_ms_per_trial", {}).items()},
                  **{f"{k} (heartbeat thread)": v for k, v in tl.get("heartbeat_ms_per_trial", {}).items()}}
        if others:
            text += "\nThe same calls on the other threads of the flow process (ms per trial):\n\n"
            text += common.md_table([{"elsewhere in the flow process": k, "ms per trial": v} for k, v in others.items()])
    if tf and tf.get("what_if"):
        text += "\nWhat-if runs (the same no-op study, one change at a time, same process):\n\n"
        text += common.md_table(tf["what_if"])
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--breakdown-n", type=int, default=50)
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, some of {','.join(TOOLS)}")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="overhead")
    p.add_argument("--work", type=Path, default=common.WORK / "overhead")
    p.add_argument("--what-if", action="store_true", help="tuneflow: also rerun the no-op study without fsync / in memory / a shorter GIL switch interval")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        common.write_results(a.name, result, markdown(result), a.out_dir)
        return result
    a.work.mkdir(parents=True, exist_ok=True)
    args = argv if argv is not None else sys.argv[1:]
    if a.child:
        fn = {"tuneflow": lambda: run_tuneflow(a, a.work), "optuna": lambda: run_optuna(a, a.work, False),
              "optuna-journal": lambda: run_optuna(a, a.work, True), "ray": lambda: run_ray(a, a.work)}[a.child]
        row = fn()
        a.child_out.write_text(json.dumps(row, default=str))
        return row

    tools = [t for t in a.tools.split(",") if t]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; choose from {TOOLS}")
    result: dict[str, Any] = {"benchmark": "overhead", "machine": common.machine(), "command": ("python benchmarks/overhead.py " + " ".join(args)).strip()}
    result["params"] = {"trials": a.trials, "parallelism": a.parallelism, "breakdown_n": a.breakdown_n}
    result["versions"] = common.versions("prefect", "optuna", "dask", "distributed", "ray")
    rows = []
    for tool in tools:
        out, log = a.work / f"row-{tool}.json", a.work / f"{tool}.log"
        out.unlink(missing_ok=True)
        print(f"[overhead] {tool} ... (log {log})", flush=True)
        with open(log, "w") as fh:
            rc = subprocess.run([sys.executable, __file__, *args, "--child", tool, "--child-out", str(out)], stdout=fh, stderr=subprocess.STDOUT, cwd=common.REPO).returncode
        if rc != 0 or not out.exists():
            raise SystemExit(f"[overhead] {tool} failed (exit {rc}); see {log}:\n" + log.read_text()[-3000:])
        row = json.loads(out.read_text())
        writes = (row.get("storage_writes") or {}).get("appends_per_trial")
        print(f"[overhead] {tool}: median {row['latency']['median_ms']} ms, wall/trial {1000 * row['tune_s'] / max(1, row['trials']):.1f} ms"
              + (f", {writes} journal appends/trial" if writes is not None else ""), flush=True)
        rows.append(row)
    result["tools"] = rows
    result["summary"] = summarize(rows)
    s = result["summary"]
    if "tuneflow_over_optuna_journal_median" in s:
        print(f"[overhead] median latency: tuneflow {s['tuneflow_median_ms']} ms, optuna-journal {s['optuna_journal_median_ms']} ms, "
              f"ratio {s['tuneflow_over_optuna_journal_median']}", flush=True)
    paths = common.write_results(a.name, result, markdown(result), a.out_dir)
    print(f"[overhead] wrote {paths[0]} and {paths[1]}", flush=True)
    return result


if __name__ == "__main__":
    main()
