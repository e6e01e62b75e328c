"""Chaos and fault scenarios for tuneflow (issue 4): prove that nothing is lost, with figures.

    .venv/bin/python benchmarks/chaos.py                       # every scenario, long versions
    .venv/bin/python benchmarks/chaos.py --short               # the CI-sized versions
    .venv/bin/python benchmarks/chaos.py worker-loss crash-resume --out /tmp/chaos.json

Needs PostgreSQL and moto S3 for the s3-faults and concurrency scenarios:
`bash infra/services.sh up && eval "$(bash infra/services.sh env)"` (they are skipped otherwise).
Prints a summary line per scenario and writes every figure as JSON to --out
(default benchmarks/results/chaos.json, or chaos-short.json with --short).

Scenarios (their code is infra/chaos.py; tests/test_reliability.py runs the short versions):
  worker-loss    the real flow on a LocalCluster of 3 single-thread worker processes; a thread
                 SIGKILLs the worker process that runs a trial every few seconds (its nanny
                 restarts it). Compared with undisturbed runs of the same study.
  crash-resume   `tuneflow run` as a subprocess, its whole process group SIGKILLed at a random
                 point of validate/shard, tune or register, re-run after each kill, then left to
                 finish. Checks caching, the journal's COMPLETE count and the MLflow registry.
  s3-faults      the shard step (and the whole flow) against moto through
                 infra/faulty_s3_proxy.py failing a share of requests; compared with a
                 fault-free run byte for byte.
  concurrency    8 processes doing ask/tell on one PostgreSQL study, 8 processes recovering the
                 same stale trials, and 3 processes calling tasks.tuning.loop.run_study on one study.
  data-parallel-loss  the flow's data-parallel trial task after one of 3 workers was SIGKILLed
                 and replaced: must complete, not wait for the dead worker's data.

Results and what they mean: benchmarks/chaos_README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra import chaos  # noqa: E402  (sets the environment defaults the scenarios need)

SCENARIOS = ("worker-loss", "crash-resume", "s3-faults", "concurrency", "data-parallel-loss")


def save(figures: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str | None]:
    """A throwaway database on TUNEFLOW_TEST_PG_URL's server (None without one)."""
    url = os.environ.get("TUNEFLOW_TEST_PG_URL")
    if not url:
        yield None
        return
    import sqlalchemy as sa

    name = f"chaos_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run_scenario(name: str, workdir: Path, short: bool, seed: int) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL

    workdir.mkdir(parents=True, exist_ok=True)
    if name == "worker-loss":
        f = chaos.worker_loss(workdir, **(chaos.WORKER_LOSS_SHORT if short else chaos.WORKER_LOSS_LONG), seed=seed)
        f["problems"] = chaos.check_worker_loss(f, spread_check=not short)
    elif name == "crash-resume":
        f = chaos.crash_resume(workdir, prefect_api_url=PREFECT_API_URL.value(), **(chaos.CRASH_SHORT if short else chaos.CRASH_LONG), seed=seed)
        f["problems"] = chaos.check_crash_resume(f)
    elif name == "s3-faults":
        if not os.environ.get("TUNEFLOW_TEST_S3_ENDPOINT"):
            return {"scenario": name, "skipped": "no TUNEFLOW_TEST_S3_ENDPOINT (bash infra/services.sh up; eval \"$(bash infra/services.sh env)\")"}
        f = chaos.s3_faults(workdir, **(chaos.S3_SHORT if short else chaos.S3_LONG))
        f["problems"] = chaos.check_s3_faults(f)
    elif name == "concurrency":
        with fresh_pg_database() as url:
            if url is None:
                return {"scenario": name, "skipped": "no TUNEFLOW_TEST_PG_URL (bash infra/services.sh up; eval \"$(bash infra/services.sh env)\")"}
            f = chaos.concurrency(url, **(chaos.CONC_SHORT if short else chaos.CONC_LONG))
        f["problems"] = chaos.check_concurrency(f)
    elif name == "data-parallel-loss":
        f = {"scenario": name, **chaos.data_parallel_after_worker_loss(workdir, hang_after_s=30 if short else 120)}
        f["problems"] = [] if f["outcome"] == "completed" else [f"data-parallel trial after a worker was replaced: {f['outcome']}"]
    else:
        raise ValueError(name)
    return f


def summary(f: dict[str, Any]) -> str:
    """One line per scenario for the terminal."""
    name = f.get("scenario")
    if "skipped" in f or "error" in f:
        return f"{name}: {f.get('skipped') or f.get('error')}"
    if name == "worker-loss":
        return (f"worker-loss: {f['counts']['complete']}/{f['settings']['n_trials']} COMPLETE, {f['counts']['running']} RUNNING, "
                f"{f['kills']} kills ({f['kills_hitting_a_trial']} on a trial), {f['retries']} retries on trials {f['retried_trials']}, "
                f"best {f['best_value']:.5f} vs undisturbed {[round(v, 5) for v in f['undisturbed_best_values']]}, "
                f"tune {f['tune_s']} s vs {f['undisturbed_tune_s']} s, wall {f['wall_s']} s vs {f['undisturbed_wall_s']} s")
    if name == "crash-resume":
        phases = [k["phase"] for k in f["kills"]]
        return (f"crash-resume: kills in {phases}; COMPLETE after each kill {f['complete_after_each_kill']} -> {f['counts']['complete']}, "
                f"{f['counts']['running']} RUNNING, {f['counts']['lost']} lost; manifest written {len(f['manifest_created_at_seen'])}x; "
                f"registry {f['registry']}; total {f['total_wall_s']} s"
                + (f" vs undisturbed {f['undisturbed']['wall_s']} s" if "undisturbed" in f else "")
                + f"; tune-done->register {f['tune_done_to_register_s']} s")
    if name == "s3-faults":
        fa = f["faulty"]
        sweep = "; ".join(f"{p['rate']:.0%}/{'boto' if p['botocore_retries'] else 'no-boto'}: {p['state']} faults {p['proxy']['faults']}/{p['proxy']['requests']} prefect retries {p['prefect_retries']}" for p in f["sweep"])
        return (f"s3-faults: identical {f['identical_shards']}; faults {fa['proxy']['faults']}/{fa['proxy']['requests']} {fa['proxy']['faults_by_kind']}, "
                f"prefect retries {fa['prefect_retries']}, wall {fa['wall_s']} s vs {f['clean']['wall_s']} s" + (f"; sweep: {sweep}" if sweep else ""))
    if name == "concurrency":
        return (f"concurrency: ask/tell {f['ask_tell']['trials']}/{f['ask_tell']['expected']} {f['ask_tell']['counts']} in {f['ask_tell']['seconds']} s; "
                f"recover {f['recover']['recovered_total']}/{f['recover']['stale']} once each {f['recover']['recovered_by_exactly_one_process']}; "
                f"run_study x{f['run_study']['processes']} n={f['run_study']['n_trials_each']}: {f['run_study']['counts']['total']} trials (overshoot {f['run_study']['budget_overshoot']})")
    if name == "data-parallel-loss":
        return f"data-parallel-loss: {f['outcome']} after {f['seconds']} s"
    return json.dumps(f)[:300]


def main(argv: list[str] | None = None) -> int:
    import platform
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"some of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--short", action="store_true", help="the CI-sized versions")
    p.add_argument("--out", type=Path, default=None, help="JSON figures (default benchmarks/results/chaos[-short].json)")
    p.add_argument("--workdir", type=Path, default=None, help="keep data, stores and logs here (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    from prefect.testing.utilities import prefect_test_harness

    figures: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "short": args.short, "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenarios": {},
    }
    args.out = args.out or REPO / "benchmarks" / "results" / ("chaos-short.json" if args.short else "chaos.json")
    failed = False
    with tempfile.TemporaryDirectory(prefix="tuneflow-chaos-") as tmp, prefect_test_harness(server_startup_timeout=180):
        root = args.workdir or Path(tmp)
        for name in args.scenarios or SCENARIOS:
            started = time.time()
            try:
                f = run_scenario(name, root / name, args.short, args.seed)
            except Exception as exc:  # report and go on with the next scenario
                import traceback

                f = {"scenario": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            f["scenario_wall_s"] = round(time.time() - started, 1)
            figures["scenarios"][name] = f
            failed |= bool(f.get("problems") or f.get("error"))
            save(figures, args.out)
            print(f"\n== {summary(f)}", flush=True)
            if f.get("problems"):
                print(f"   PROBLEMS: {f['problems']}", flush=True)
    print(f"\nfigures: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
