"""Shared pieces of the benchmarks: the synthetic dataset, tuneflow's shard step, the fixed list of
configurations, process-tree monitoring (CPU and RSS) and writing results as JSON + Markdown.

The dataset ("synth28"): binary label, 28 float32 features, standard normal; the label's log-odds
are step functions of 8 features plus one interaction (so trees learn it in tens to hundreds of
rounds and early stopping ends most trials well before 500 rounds), labels drawn from the logistic.
Rows are generated in fixed blocks of 250,000 with a per-block seed, so the 0.25M, 1M and 4M sets
are prefixes of one another. Values are rounded to 4 decimals (a CSV of ~200 bytes per row).

Imports no Prefect/Optuna at module level: the GPU script must not need them (it does not import
this module either; see gpu.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

RESULTS = REPO / "benchmarks" / "results"
WORK = Path(os.environ.get("TUNEFLOW_BENCH_WORK", REPO / ".tuneflow" / "bench"))
N_FEATURES = 28
TARGET = "label"
BLOCK = 250_000
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
SHARD_SEED = 0


def fresh_home(home: Path) -> Path:
    """Point TUNEFLOW_HOME and PREFECT_HOME (set before Prefect is imported) at a new folder, so a
    run starts like a first run: no Prefect cache hits, an empty ephemeral-server database."""
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ["TUNEFLOW_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    # a first start migrates a new database: past Prefect's 20 s default on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return home


# ---------------------------------------------------------------- data


def synth_block(rows: int, seed: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """One block of the synth28 dataset: (X float32 [rows, 28], y int8)."""
    rng = np.random.default_rng([seed, block])
    X = rng.standard_normal((rows, N_FEATURES), dtype=np.float32).round(4)
    a = np.array([1.2, -1.0, 0.9, -0.8, 0.7, 0.6, -0.5, 0.5], dtype=np.float32)
    t = np.array([0.0, 0.5, -0.5, 1.0, 0.2, -1.0, 0.8, -0.3], dtype=np.float32)
    logit = ((X[:, :8] > t) * a).sum(1) - a.clip(0).sum() / 2 + 0.6 * (X[:, 8] > 0) * (X[:, 9] > 0)
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return X, y


def synth_blocks(rows: int, seed: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    done, block = 0, 0
    while done < rows:
        n = min(BLOCK, rows - done)
        X, y = synth_block(BLOCK, seed, block)
        yield X[:n], y[:n]
        done += n
        block += 1


def write_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """The synth28 dataset as one CSV (cached: reused when it exists with a done-marker)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    done = path.with_suffix(path.suffix + ".done")
    if path.exists() and done.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([(f, pa.float32()) for f in FEATURES] + [(TARGET, pa.int8())])
    with pacsv.CSVWriter(str(tmp), schema) as writer:
        for X, y in synth_blocks(rows, seed):
            cols = [pa.array(X[:, i]) for i in range(N_FEATURES)] + [pa.array(y)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    tmp.replace(path)
    done.write_text(str(rows))
    return path


def dataset_csv(rows: int, seed: int = 7, work: Path = WORK) -> Path:
    label = f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    return write_csv(work / "data" / f"synth28-{label}-s{seed}" / "synth28.csv", rows, seed)


def shard_step(csv: Path, store: str, seed: int = SHARD_SEED) -> tuple[dict[str, Any], float]:
    """Run tuneflow's shard step (the flow's shard_task body: read_dataset + shard_dataset) on
    the default Dask client; returns (manifest, seconds). An existing manifest is reused (0 s).

    The profile handed to the shard step is the part of the validation profile it uses (the label
    classes; no categorical columns here), so the manifest is the one the flow itself writes:
    a later flow run on the same CSV and store finds it and reuses it.
    """
    from tasks.data import inputs, shard
    from tasks.plan import plan_run

    plan = plan_run(str(csv), TARGET, "binary", None, None, None, seed, None, 1, None, 1)
    profile = {"classes": {"0": 0, "1": 0}, "categories": {}}
    started = time.perf_counter()
    ddf = inputs.read_dataset(plan.files, plan.schema, plan.data_options)
    manifest = shard.shard_dataset(
        ddf, plan.files, plan.schema, profile, store=store, name=plan.name, fp=plan.fingerprint, seed=seed,
        fractions=shard.DEFAULT_FRACTIONS, row_key=None, storage_options=plan.data_options,
    )
    return manifest, time.perf_counter() - started


def existing_manifest(csv: Path, store: str, seed: int = SHARD_SEED) -> dict[str, Any] | None:
    """The manifest the shard step would reuse for this CSV and store, if it is there."""
    from tasks import objectstore
    from tasks.data import shard
    from tasks.plan import plan_run

    plan = plan_run(str(csv), TARGET, "binary", None, None, None, seed, None, 1, None, 1)
    uri = objectstore.join(shard.version_uri(store, plan.name, plan.fingerprint), shard.MANIFEST)
    return objectstore.read_json(uri) if objectstore.exists(uri) else None


def load_xy(manifest: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's shards as a float32 matrix and label vector (how the peers read the shards)."""
    import pyarrow.parquet as pq

    from tasks.contracts import LABEL_COLUMN
    from tasks.engine.shards import split_uris

    table = pq.read_table(split_uris(manifest, split))
    y = table.column(LABEL_COLUMN).to_numpy().astype(np.float32)
    X = np.column_stack([table.column(f["name"]).to_numpy() for f in manifest["features"]]).astype(np.float32, copy=False)
    return X, y


# ---------------------------------------------------------------- configurations


def draw_configs(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """n configurations drawn at random (seeded) from tuneflow's default search space.

    Only the tuned parameters: fixed ones (max_bin=256) are the same everywhere anyway.
    """
    import optuna

    from tasks.tuning.search_space import DEFAULT_SPACE, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, DEFAULT_SPACE)
        study.tell(trial, 0.0)
        configs.append({k: v for k, v in params.items() if isinstance(DEFAULT_SPACE[k], dict)})
    return configs


def ray_space(tune: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune's param_space for a tuneflow search space (`tune` is `ray.tune`), plus the fixed params and nthread=1."""
    out: dict[str, Any] = {**fixed_params(), "nthread": 1}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            continue
        if spec["type"] == "int":
            out[name] = tune.randint(spec["low"], spec["high"] + 1)
        elif spec["type"] == "categorical":
            out[name] = tune.choice(spec["choices"])
        elif spec.get("log"):
            out[name] = tune.loguniform(spec["low"], spec["high"])
        else:
            out[name] = tune.uniform(spec["low"], spec["high"])
    return out


def fixed_params() -> dict[str, Any]:
    """What every tool trains with besides the configuration (what tuneflow's flow sets)."""
    from tasks.problem import objective_params
    from tasks.tuning.search_space import DEFAULT_SPACE

    return {**objective_params("binary", 2, "auc"), "seed": 0, "tree_method": "hist", "max_bin": DEFAULT_SPACE["max_bin"], "verbosity": 0}


# ---------------------------------------------------------------- monitoring


class TreeMonitor:
    """Samples this process tree (children included, e.g. Dask workers, Ray workers, Prefect's
    server) every `interval` s: total RSS (peak kept) and CPU time; and the machine's busy CPU,
    so that the CPU used by other processes (other engineers' tests) can be reported."""

    def __init__(self, interval: float = 0.05, root_pid: int | None = None) -> None:
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(root_pid or os.getpid())
        self.interval = interval
        self.peak_rss = 0
        self.baseline_rss = 0
        self.samples = 0
        self._cpu_seen: dict[tuple[int, float], float] = {}
        self.proc_peak: dict[int, int] = {}  # pid -> peak RSS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-monitor")

    def _procs(self) -> list[Any]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except self.psutil.Error:
            return [self.root]

    def _sample(self) -> None:
        rss = 0
        for p in self._procs():
            try:
                with p.oneshot():
                    r = p.memory_info().rss
                    rss += r
                    self.proc_peak[p.pid] = max(self.proc_peak.get(p.pid, 0), r)
                    t = p.cpu_times()
                    self._cpu_seen[(p.pid, p.create_time())] = t.user + t.system
            except self.psutil.Error:
                continue
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)

    def tree_rss(self) -> int:
        rss = 0
        for p in self._procs():
            try:
                rss += p.memory_info().rss
            except self.psutil.Error:
                continue
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "TreeMonitor":
        self._sample()
        self.baseline_rss = self.peak_rss
        self._cpu0 = sum(self._cpu_seen.values())
        self._seen0 = dict(self._cpu_seen)
        self._sys0 = self._busy()
        self._wall0 = time.perf_counter()
        self._load0 = os.getloadavg()
        self._thread.start()
        return self

    def _busy(self) -> float:
        t = self.psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self._wall0
        own = sum(v - self._seen0.get(k, 0.0) for k, v in self._cpu_seen.items())
        self.own_cpu_s = own
        self.machine_busy_s = self._busy() - self._sys0
        self.load_end = os.getloadavg()

    def report(self) -> dict[str, Any]:
        wall = max(self.wall, 1e-9)
        return {
            "wall_s": round(self.wall, 3),
            "own_tree_cpu_cores": round(self.own_cpu_s / wall, 2),
            "machine_busy_cores": round(self.machine_busy_s / wall, 2),
            "other_processes_cores": round(max(0.0, self.machine_busy_s - self.own_cpu_s) / wall, 2),
            "loadavg_1m_start": round(self._load0[0], 2),
            "loadavg_1m_end": round(self.load_end[0], 2),
            "peak_rss_mb": round(self.peak_rss / 2**20, 1),
            "largest_process_peak_rss_mb": round(max(self.proc_peak.values(), default=0) / 2**20, 1),
            "baseline_rss_mb": round(self.baseline_rss / 2**20, 1),
        }


def _process_label(p: Any, root: int) -> str:
    """What a process of the tree is: this process, a Dask worker, Prefect's temporary server, other."""
    if p.pid == root:
        return "this process"
    try:
        cmd = " ".join(p.cmdline())
    except Exception:  # gone, or not ours to read
        return "other"
    if "uvicorn" in cmd or ("prefect" in cmd and "server" in cmd):
        return "prefect server"
    if "resource_tracker" in cmd:
        return "other"
    if "spawn_main" in cmd or "multiprocessing" in cmd:
        return "worker processes"
    return "other"


def tree_cpu(root_pid: int | None = None) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process in the tree, by pid, with its label."""
    import psutil

    root = psutil.Process(root_pid or os.getpid())
    out: dict[int, tuple[str, float]] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = [root]
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = (_process_label(p, root.pid), t.user + t.system)
        except psutil.Error:
            continue
    return out


def cpu_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two tree_cpu() readings, summed by label (processes that started
    in between count from 0; those that ended in between are lost, hence 'at least')."""
    spent: dict[str, float] = {}
    for pid, (label, cpu) in after.items():
        spent[label] = spent.get(label, 0.0) + cpu - before.get(pid, (label, 0.0))[1]
    return {k: round(v, 3) for k, v in sorted(spent.items())}


# ---------------------------------------------------------------- results


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def save_figure(fig: Any, axes: list[Any], path: Path, *, legend_inches: float, dpi: int) -> Path:
    """One legend for every panel, outside them (the curves stay visible); written atomically."""
    import matplotlib.pyplot as plt

    legend: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - legend_inches / fig.get_figwidth(), 1))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


def md_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:,.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, result: dict[str, Any], markdown: str, out_dir: Path = RESULTS) -> tuple[Path, Path]:
    """benchmarks/results/<name>.json and <name>.md (written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / f"{name}.json", out_dir / f"{name}.md"
    for path, text in zip(paths, (json.dumps(result, indent=2, sort_keys=False, default=str) + "\n", markdown)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def header(title: str, command: str, result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"## {title}\n\n`{command}`  \n"
        f"{m['date']}; {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
        f"load average at start {m['loadavg_at_start'][0]}\n\n"
    )


def stats_ms(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"median_ms": float("nan"), "mean_ms": float("nan"), "p90_ms": float("nan")}
    ms = sorted(v * 1000 for v in values_s)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "p90_ms": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 2),
    }
