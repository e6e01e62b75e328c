"""Per-trial orchestration overhead: 200 no-op trials through tuneflow, Optuna and Ray Tune.

    .venv/bin/python benchmarks/overhead.py                  # 200 trials each, 2 in flight
    .venv/bin/python benchmarks/overhead.py --trials 20 --tools tuneflow,optuna

tuneflow runs its real machinery: a Prefect @flow with the flow's ThreadPoolTaskRunner, a
LocalCluster from tasks.cluster.dask_client, tasks.study.open_study (journal file, the flow's
TPE sampler) and run_study, submitting the flow's own `trial_task` (Prefect task -> client.submit
(run_trial) on a Dask worker -> model write -> tell) with spec {"noop": true}, and the flow's
Leaderboard as the event listener. Optuna: study.optimize(n_jobs=2) with an objective that samples
the same space and returns 0 (in-memory storage, Optuna's default; and a journal file, as
tuneflow uses). Ray Tune: a function trainable that reports 0, 1 CPU per trial, 2 CPUs.

Per trial: latency (tuneflow/Optuna: ask -> tell, from the study's start/complete times; Ray:
trial start -> complete, from a Tune callback) as median and mean; and wall / trials (throughput
with 2 in flight). A breakdown of tuneflow's per-trial cost follows: each component timed alone,
one at a time, in the same flow and cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TOOLS = ("tuneflow", "optuna", "optuna-journal", "ray")


def _noop_with_model(spec: dict[str, Any]) -> dict[str, Any]:
    """run_trial's no-op result plus an empty model (trial_task pops and writes "model_ubj")."""
    from tasks.trial_engine import run_trial

    result = run_trial(spec)
    result.setdefault("model_ubj", b"")
    return result


def _timeit(fn: Any, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        times.append(time.perf_counter() - s)
    return common.stats_ms(times)


def run_tuneflow(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = common.fresh_home(work / f"home-{uuid.uuid4().hex[:8]}")
    import optuna
    from prefect import flow, task
    from prefect.cache_policies import NONE as NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    import flows.tune_xgboost as ft
    from tasks import search_space, study as tstudy
    from tasks import storage as objstore
    from tasks.cluster import dask_client
    from tasks.trial_engine import run_trial

    patched = "model_ubj" not in run_trial({"noop": True})
    if patched:  # see README: the no-op path of run_trial returns no model, which trial_task requires
        ft.run_trial = _noop_with_model

    @task(name="empty", cache_policy=NO_CACHE, **ft.RETRY)
    def empty_task(number: int, params: dict, spec: dict, model_uri: str, timeout_s: float | None) -> dict:
        return {"value": 0.0}

    @flow(name="tuneflow-overhead", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
    def overhead_flow() -> dict[str, Any]:
        out: dict[str, Any] = {}
        storage_url = str(home / "optuna.journal")
        store = str(home / "store")
        with dask_client(None, a.parallelism, "cpu") as client:
            spec = {"noop": True, "params": {}, "placement": "trial", "storage_options": {}, "device": "cpu"}
            client.run(lambda: __import__("tasks.trial_engine"))  # workers import the engine before the clock starts
            the_study = tstudy.open_study(storage_url, "overhead", "maximize", 0)
            models = objstore.join(store, "studies", the_study.study_name, "models")
            leaderboard = ft.Leaderboard("trial-leaderboard", "maximize")
            with common.TreeMonitor(interval=0.5) as mon:
                outcome = tstudy.run_study(
                    the_study, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                    submit=lambda number, params: ft.trial_task.submit(number, params, spec, objstore.join(models, f"trial-{number:05d}.ubj"), None),
                    on_event=leaderboard,
                )
            trials = the_study.get_trials(deepcopy=False)
            lat = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]
            worker = [t.user_attrs.get("seconds", 0.0) for t in trials]
            out.update({
                "tune_s": round(outcome.seconds, 3), "trials": outcome.completed, "failed": outcome.failed,
                "latency": common.stats_ms(lat), "latency_first5_ms": [round(x * 1000, 1) for x in lat[:5]],
                "latency_last_50": common.stats_ms(lat[-50:]), "worker_body": common.stats_ms(worker), "monitor": mon.report(),
            })

            # Breakdown: each piece alone, sequentially, in this flow and cluster.
            n = a.breakdown_n
            b: dict[str, Any] = {}
            side = tstudy.open_study(storage_url, "overhead-breakdown", "maximize", 0)
            side.add_trials([t for t in trials if t.state.name == "COMPLETE"])  # the same history as at the end of the run
            asked: list[Any] = []

            def ask() -> None:
                t = side.ask()
                t.set_user_attr(tstudy.RUN_ATTR, "x")
                t.set_user_attr(tstudy.HEARTBEAT_ATTR, time.time())
                search_space.suggest(t, search_space.DEFAULT_SPACE)
                asked.append(t)

            def tell() -> None:
                t = asked.pop()
                for k, v in {"noop": True, "seconds": 0.0, "model_uri": "x", "attempt": 1, "placement": "trial"}.items():
                    t.set_user_attr(k, v)
                side.tell(t, 0.0)
                tstudy._best(side)

            b["ask + 2 user attrs + suggest (journal, TPE)"] = _timeit(ask, n)
            b["5 user attrs + tell + best_trial (journal)"] = _timeit(tell, n)
            rnd = tstudy.open_study(storage_url, "overhead-random", "maximize", 0)
            rnd.sampler = optuna.samplers.RandomSampler(seed=0)
            b["ask + suggest with RandomSampler (journal)"] = _timeit(lambda: search_space.suggest(rnd.ask(), search_space.DEFAULT_SPACE), n)
            b["Prefect task, empty body: submit().result()"] = _timeit(lambda: empty_task.submit(0, {}, spec, "x", None).result(), n)
            b["Dask client.submit(run_trial noop).result()"] = _timeit(lambda: client.submit(run_trial, spec, pure=False).result(), n)
            b["model write (write_bytes_atomic, 0 bytes)"] = _timeit(lambda: objstore.write_bytes_atomic(objstore.join(models, f"x-{uuid.uuid4().hex}.ubj"), b""), n)
            b["trial_task end to end: submit().result()"] = _timeit(
                lambda: ft.trial_task.submit(0, {}, spec, objstore.join(models, "x.ubj"), None).result(), n)
            out["breakdown"] = b
            with common.TreeMonitor(interval=0.5) as mon2:
                out["timeline"] = instrumented_pass(a, storage_url, models, spec, ft, tstudy, search_space, objstore)
            out["timeline"]["other_processes_cores"] = mon2.report()["other_processes_cores"]
            if a.what_if:
                out["what_if"] = what_if_passes(a, storage_url, models, spec, ft, tstudy, search_space, objstore)
        return out

    started = time.perf_counter()
    out = overhead_flow()
    out["total_s"] = round(time.perf_counter() - started, 2)
    out["patched_noop_model"] = patched
    out["tool"] = "tuneflow"
    out["how"] = f"Prefect flow + run_study + flow's trial_task on LocalCluster ({a.parallelism} workers), journal file"
    return out


def instrumented_pass(a: argparse.Namespace, storage_url: str, models: str, spec: dict, ft: Any, tstudy: Any, search_space: Any, objstore: Any) -> dict[str, Any]:
    """A second no-op study, same machinery, with timestamps taken around each step of every trial
    (main loop: ask, set_user_attr, suggest, submit, tell, best, events; Prefect thread: the trial
    task's body; the future's completion). Only reads clocks: the steps themselves are unchanged."""
    import collections
    import concurrent.futures as cf
    import threading

    import optuna

    main = threading.get_ident()
    marks: dict[int, dict[str, float]] = collections.defaultdict(dict)
    main_s: dict[str, float] = collections.defaultdict(float)
    restore: list[tuple[Any, str, Any]] = []
    clock = time.perf_counter

    def wrap(owner: Any, name: str, category: str, mark: Any = None) -> None:
        orig = getattr(owner, name)

        def timed(*args: Any, **kw: Any) -> Any:
            if threading.get_ident() != main:
                return orig(*args, **kw)
            start = clock()
            try:
                res = orig(*args, **kw)
            finally:
                end = clock()
                main_s[category] += end - start
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
    wrap(tstudy, "suggest", "suggest (7 params)")
    wrap(tstudy, "_best", "best_trial after each trial")
    wrap(cf, "wait", "waiting for a trial (idle)")
    original_fn = ft.trial_task.fn

    def body(number: int, *rest: Any) -> dict:
        marks[number]["body0"] = clock()
        try:
            return original_fn(number, *rest)
        finally:
            marks[number]["body1"] = clock()

    ft.trial_task.fn = body

    def submit(number: int, params: dict) -> Any:
        marks[number]["submit0"] = s = clock()
        fut = ft.trial_task.submit(number, params, spec, objstore.join(models, f"t-{number:05d}.ubj"), None)
        marks[number]["submit1"] = e = clock()
        main_s["trial_task.submit (in the loop)"] += e - s
        getattr(fut, "wrapped_future", fut).add_done_callback(lambda _: marks[number].__setitem__("done", clock()))
        return fut

    leaderboard = ft.Leaderboard("trial-leaderboard-instrumented", "maximize")

    def on_event(event: Any) -> None:
        s = clock()
        leaderboard(event)
        main_s["on_event (progress + leaderboard artifact)"] += clock() - s

    the_study = tstudy.open_study(storage_url, "overhead-instrumented", "maximize", 0)
    try:
        started = clock()
        outcome = tstudy.run_study(the_study, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                                   submit=submit, on_event=on_event)
        wall = clock() - started
    finally:
        ft.trial_task.fn = original_fn
        for owner, name, orig in reversed(restore):
            setattr(owner, name, orig)
    steps = {
        "ask": ("ask0", "ask1"), "2 user attrs + suggest": ("ask1", "submit0"), "Prefect: submit -> task body starts": ("submit0", "body0"),
        "task body: Dask submit/result + model write": ("body0", "body1"), "Prefect: body ends -> future done": ("body1", "done"),
        "result -> tell starts (info attrs; loop busy)": ("done", "tell0"), "tell": ("tell0", "tell1"),
    }
    per_step = {}
    full = [m for m in marks.values() if all(k in m for k in ("ask0", "submit0", "body0", "body1", "done", "tell0", "tell1"))]
    for label, (x, y) in steps.items():
        per_step[label] = common.stats_ms([m[y] - m[x] for m in full])
    per_step["latency ask -> tell done"] = common.stats_ms([m["tell1"] - m["ask0"] for m in full])
    n = max(1, outcome.completed)
    busy = {k: round(1000 * v / n, 2) for k, v in sorted(main_s.items(), key=lambda kv: -kv[1])}
    busy["main loop total, excluding waiting"] = round(sum(v for k, v in busy.items() if not k.startswith("waiting")), 2)
    return {"trials": outcome.completed, "wall_s": round(wall, 3), "wall_per_trial_ms": round(1000 * wall / n, 2),
            "per_trial_steps": per_step, "main_loop_ms_per_trial": busy}


def what_if_passes(a: argparse.Namespace, storage_url: str, models: str, spec: dict, ft: Any, tstudy: Any, search_space: Any, objstore: Any) -> list[dict[str, Any]]:
    """The same no-op study again with one thing changed at a time, to size each fix:
    Optuna storage in memory instead of the journal file (upper bound of what fewer/cheaper
    storage writes can save); Python's thread switch interval 0.5 ms instead of 5 ms (the flow
    thread, Prefect's worker threads, Dask's client and in-process scheduler share one GIL)."""
    import optuna

    rows = []
    import threading

    import optuna.storages.journal._file as journal_file

    variants = [  # label, storage (journal | nosync | memory), switch interval, fewer attr writes
        ("as is (journal file, switch interval 5 ms)", "journal", None, False),
        ("1 user-attr write per trial instead of 7", "journal", None, True),
        ("journal appends without fsync", "nosync", None, False),
        ("Optuna storage in memory", "memory", None, False),
        ("switch interval 0.5 ms", "journal", 0.0005, False),
        ("no fsync + 1 attr write + switch interval 0.5 ms", "nosync", 0.0005, True),
        ("in memory + switch interval 0.5 ms", "memory", 0.0005, False),
    ]
    real_fsync = journal_file.os.fsync
    main = threading.get_ident()
    original_set = optuna.trial.Trial.set_user_attr

    def one_write(self: Any, key: str, value: Any) -> None:
        # the loop's writes: the 2 at ask dropped (the heartbeat thread still beats), the result's
        # keys stand for one combined write (model_uri is written, the rest skipped)
        if threading.get_ident() != main or key == "model_uri":
            original_set(self, key, value)

    for i, (label, storage, switch, fewer) in enumerate(variants):
        old = sys.getswitchinterval()
        if switch:
            sys.setswitchinterval(switch)
        if fewer:
            optuna.trial.Trial.set_user_attr = one_write
        if storage == "nosync":  # optuna's journal module sees an os whose fsync does nothing
            journal_file.os = types.SimpleNamespace(**{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "fsync": lambda fd: None})
        try:
            if storage != "memory":
                st = tstudy.open_study(storage_url, f"overhead-whatif-{i}", "maximize", 0)
            else:
                st = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=8, multivariate=True))
            with common.TreeMonitor(interval=0.5) as mon:
                outcome = tstudy.run_study(
                    st, search_space.DEFAULT_SPACE, n_trials=a.trials, timeout=None, parallelism=a.parallelism,
                    submit=lambda number, params: ft.trial_task.submit(number, params, spec, objstore.join(models, f"w-{number:05d}.ubj"), None),
                    on_event=ft.Leaderboard(f"trial-leaderboard-whatif-{i}", "maximize"),
                )
        finally:
            sys.setswitchinterval(old)
            optuna.trial.Trial.set_user_attr = original_set
            journal_file.os = os
        lat = [(t.datetime_complete - t.datetime_start).total_seconds() for t in st.get_trials(deepcopy=False) if t.datetime_complete]
        rows.append({"variant": label, "trials": outcome.completed, "wall_per_trial_ms": round(1000 * outcome.seconds / max(1, outcome.completed), 2),
                     **{f"latency_{k}": v for k, v in common.stats_ms(lat).items()}, "other_processes_cores": mon.report()["other_processes_cores"]})
    return rows


def run_optuna(a: argparse.Namespace, work: Path, journal: bool) -> dict[str, Any]:
    import optuna

    from tasks.search_space import DEFAULT_SPACE, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if journal:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(work / f"optuna-{uuid.uuid4().hex[:8]}.journal")))

    def objective(trial: optuna.Trial) -> float:
        suggest(trial, DEFAULT_SPACE)
        return 0.0

    study = optuna.create_study(direction="maximize", storage=storage)
    with common.TreeMonitor(interval=0.5) as mon:
        s = time.perf_counter()
        study.optimize(objective, n_trials=a.trials, n_jobs=a.parallelism)
        wall = time.perf_counter() - s
    lat = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    return {
        "tool": "optuna-journal" if journal else "optuna", "how": f"study.optimize(n_jobs={a.parallelism}), {'journal file' if journal else 'in-memory'} storage, TPE",
        "tune_s": round(wall, 3), "total_s": round(wall, 3), "trials": len(study.trials), "latency": common.stats_ms(lat), "monitor": mon.report(),
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
        "tune_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3), "trials": len(results), "latency": common.stats_ms(lat), "monitor": mon.report(),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["tools"]:
        rows.append({
            "tool": r["tool"], "how": r["how"], "trials": r["trials"], "wall s": r["tune_s"],
            "wall/trial ms": round(1000 * r["tune_s"] / max(1, r["trials"]), 2),
            "latency median ms": r["latency"]["median_ms"], "latency mean ms": r["latency"]["mean_ms"],
            "latency p90 ms": r["latency"]["p90_ms"], "other CPU (cores)": r["monitor"]["other_processes_cores"],
        })
    text = common.header("Per-trial overhead, no-op trials", result["command"], result)
    text += common.md_table(rows)
    s = result.get("summary", {})
    if "tuneflow_median_ms" in s:
        text += (
            f"\ntuneflow median latency per no-op trial: **{s['tuneflow_median_ms']} ms** (target < 30 ms: "
            f"{'met' if s['target_met'] else 'NOT met'}); wall per trial with {result['params']['parallelism']} in flight: "
            f"{s['tuneflow_wall_per_trial_ms']} ms.\n"
        )
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
        text += "\nThe flow thread's own work per trial (ms; it serves both slots, so it bounds throughput):\n\n"
        text += common.md_table([{"in the flow's ask/tell loop": k, "ms per trial": v} for k, v in tl["main_loop_ms_per_trial"].items()])
    if tf and tf.get("what_if"):
        text += "\nWhat-if runs (the same no-op study, one change at a time, same process):\n\n"
        text += common.md_table(tf["what_if"])
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--breakdown-n", type=int, default=50)
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="overhead")
    p.add_argument("--work", type=Path, default=common.WORK / "overhead")
    p.add_argument("--what-if", action="store_true", help="tuneflow: also rerun the no-op study with the storage in memory / a shorter GIL switch interval")
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

    result: dict[str, Any] = {"benchmark": "overhead", "machine": common.machine(), "command": ("python benchmarks/overhead.py " + " ".join(args)).strip()}
    result["params"] = {"trials": a.trials, "parallelism": a.parallelism, "breakdown_n": a.breakdown_n}
    result["versions"] = common.versions("prefect", "optuna", "dask", "distributed", "ray")
    rows = []
    for tool in [t for t in a.tools.split(",") if t]:
        if tool not in TOOLS:
            raise SystemExit(f"unknown tool {tool}; choose from {TOOLS}")
        out, log = a.work / f"row-{tool}.json", a.work / f"{tool}.log"
        out.unlink(missing_ok=True)
        print(f"[overhead] {tool} ... (log {log})", flush=True)
        with open(log, "w") as fh:
            rc = subprocess.run([sys.executable, __file__, *args, "--child", tool, "--child-out", str(out)], stdout=fh, stderr=subprocess.STDOUT, cwd=common.REPO).returncode
        if rc != 0 or not out.exists():
            raise SystemExit(f"[overhead] {tool} failed (exit {rc}); see {log}:\n" + log.read_text()[-3000:])
        row = json.loads(out.read_text())
        print(f"[overhead] {tool}: median {row['latency']['median_ms']} ms, wall/trial {1000 * row['tune_s'] / max(1, row['trials']):.1f} ms", flush=True)
        rows.append(row)
    result["tools"] = rows
    tf = next((r for r in rows if r["tool"] == "tuneflow"), None)
    if tf:
        result["summary"] = {
            "tuneflow_median_ms": tf["latency"]["median_ms"], "tuneflow_mean_ms": tf["latency"]["mean_ms"],
            "tuneflow_wall_per_trial_ms": round(1000 * tf["tune_s"] / max(1, tf["trials"]), 2),
            "target_ms": 30, "target_met": tf["latency"]["median_ms"] < 30,
        }
    common.write_results(a.name, result, markdown(result), a.out_dir)
    return result


if __name__ == "__main__":
    main()
