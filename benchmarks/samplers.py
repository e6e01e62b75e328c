"""Samplers: best score against trials and against wall time, each of tuneflow's samplers vs random search.

    .venv/bin/python benchmarks/samplers.py                     # the full run: 2 datasets x 7 tools x 3 seeds x 100 trials (~10-20 min on 2 cores)
    .venv/bin/python benchmarks/samplers.py --trials 100 --tools auto,tpe,random,qmc,gp,cmaes,nsga2 --seeds 0,1,2 \\
        --datasets churn,digits --out-dir benchmarks/results  # the same, spelled out
    .venv/bin/python benchmarks/samplers.py --trials 6 --seeds 0 --tools auto,random --rows 1500 --max-rounds 30 \\
        --out-dir /tmp/sb                                     # smoke (seconds)
    .venv/bin/python benchmarks/samplers.py --render            # rewrite the .md and .png from the .json

Every (dataset, tool, seed) is one study run through tuneflow's own pieces, as the flow wires them:
`choose_sampler(tool, DEFAULT_SPACE, n_trials)` (so `auto` is resolved as tuneflow resolves it in
this environment: GP where torch is installed, TPE where it is not, and the reason is recorded),
`open_study(journal, name, direction, seed, sampler=lambda s: build_sampler(choice, space, s))`, and
`run_study(study, DEFAULT_SPACE, n_trials=TRIALS, parallelism=P, submit=...)`, whose submit hands the
trial to a thread pool of P threads. A trial is tuneflow's trial engine minus the data loading:
`tasks.engine.training.new_booster` + `boost` over one QuantileDMatrix pair (train, valid; max_bin
256, built once per dataset and shared by the threads, as the resident trainer keeps it), `hist`,
nthread 1, seed 0, at most `--max-rounds` rounds with early stopping after `--early-stopping-rounds`
(XGBoost's rule, as tuneflow applies it); the trial's value is the best valid score over its rounds.
A tool the environment cannot run (e.g. `gp` without torch, `grid` on this continuous space) is
skipped with choose_sampler's own message as the note.

Datasets (`--datasets`), split into train/valid/test by tuneflow's own split (tasks.data.shard.split_of,
80/10/10, seed 0; only train and valid are used):
  churn          tuneflow's synthetic churn sample (tasks.data.sample.make_churn, seed 7), --rows rows,
                 3 categorical + 14 numeric columns with missing values, binary, AUC (tuneflow's default metric).
  digits         scikit-learn's bundled digits (1,797 8x8 images, 64 features), binary: odd vs even digit,
                 logloss (its AUC is ~0.999 for most configurations: too flat to compare samplers).
  breast_cancer  scikit-learn's bundled breast cancer set (569 rows, 30 features), binary, logloss.
The scikit-learn sets are capped at --rows rows (a seeded subsample) when --rows is smaller.

Reported per dataset: (a) the target, random search's best after `--trials` finished trials, per
seed; (b) per tool the finished trials it needed to reach that value (median over seeds; a seed
that does not reach it counts as not reached, and a median needs half of the seeds to reach it),
and that as a share of `--trials`; (c) the best after 25%, 50% and 100% of the trials (25/50/100 at
100 trials); (d) wall seconds of the run and to the target. Trials are counted in the order they
finished (told). The goal, reported as MET / NOT MET per dataset and not tuned for: `auto` reaches
random search's `--trials`-trial best in <= 1/2 of the trials on every dataset (median over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TOOLS = ("auto", "tpe", "random", "qmc", "gp", "cmaes", "nsga2", "grid")
DEFAULT_TOOLS = "auto,tpe,random,qmc,gp,cmaes,nsga2"
DATASETS = ("churn", "digits", "breast_cancer")
DEFAULT_DATASETS = "churn,digits"
GOAL_FRACTION = 1 / 2  # auto reaches random search's best in <= 1/2 of the trials
CHECKPOINTS = (0.25, 0.5, 1.0)
SPLIT_SEED = 0
NAME = "samplers"


# ---------------------------------------------------------------- data


class Data:
    """One dataset's train/valid QuantileDMatrix pair and what its trials are scored by."""

    def __init__(self, name: str, X: Any, y: np.ndarray, split: np.ndarray, *, task: str, metric: str, info: dict[str, Any]) -> None:
        import xgboost as xgb

        from tasks.problem import resolve_metric
        from tasks.tuning.search_space import DEFAULT_SPACE

        self.name, self.task, self.metric = name, task, metric
        self.direction = resolve_metric(task, metric)[1]
        self.maximize = self.direction == "maximize"
        take = (lambda m: X.iloc[np.flatnonzero(m)]) if hasattr(X, "iloc") else (lambda m: X[m])
        train, valid = split == "train", split == "valid"
        max_bin = int(DEFAULT_SPACE["max_bin"])
        self.dtrain = xgb.QuantileDMatrix(take(train), label=y[train], max_bin=max_bin, enable_categorical=True)
        self.dvalid = xgb.QuantileDMatrix(take(valid), label=y[valid], ref=self.dtrain, max_bin=max_bin, enable_categorical=True)
        categorical = int(sum(str(t) == "category" for t in X.dtypes)) if hasattr(X, "dtypes") else 0
        self.info = {
            "name": name, **info, "rows": int(len(y)), "train_rows": int(train.sum()), "valid_rows": int(valid.sum()),
            "features": int(X.shape[1]), "categorical_features": categorical, "task": task, "metric": metric,
            "direction": self.direction, "positive_share_train": round(float(y[train].mean()), 4),
        }

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def reached(self, value: float, target: float) -> bool:
        return value >= target - 1e-12 if self.maximize else value <= target + 1e-12


def churn_frame(rows: int, seed: int = 7, id_offset: int = 0) -> Any:
    """tasks.data.sample.make_churn with its categorical columns as pandas categories (how the
    shard step types them) and the customer ids shifted by `id_offset` (new rows of a later version)."""
    import pandas as pd

    from tasks.data.sample import DEVICES, PLANS, REGIONS, make_churn

    df = make_churn(rows, seed=seed)
    df["customer_id"] = df["customer_id"] + id_offset
    for col, cats in (("region", REGIONS), ("plan", PLANS), ("device", DEVICES)):
        df[col] = pd.Categorical(df[col], categories=cats)
    return df


def tuneflow_split(keys: Any, row_key: str | None) -> np.ndarray:
    """tuneflow's split label per row (tasks.data.shard.split_of: a seeded hash of the row key)."""
    import pandas as pd

    from tasks.data.shard import DEFAULT_FRACTIONS, split_of

    frame = keys if isinstance(keys, pd.DataFrame) else pd.DataFrame(index=range(int(keys)))
    return split_of(frame, 0, seed=SPLIT_SEED, fractions=DEFAULT_FRACTIONS, row_key=row_key)


def churn_data(df: Any, name: str = "churn", info: dict[str, Any] | None = None) -> Data:
    y = df["churned"].to_numpy(np.float32)
    X = df.drop(columns=["customer_id", "churned"])
    return Data(name, X, y, tuneflow_split(df[["customer_id"]], "customer_id"), task="binary", metric="auc",
                info={"source": "tasks.data.sample.make_churn(seed=7); row key customer_id", **(info or {})})


def load_dataset(name: str, rows: int) -> Data:
    if name == "churn":
        return churn_data(churn_frame(rows))
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        y_all, source = (bunch.target % 2).astype(np.float32), "sklearn.datasets.load_digits (bundled); label: odd digit"
    elif name == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        y_all, source = bunch.target.astype(np.float32), "sklearn.datasets.load_breast_cancer (bundled)"
    else:
        raise SystemExit(f"unknown dataset {name!r}; use some of {','.join(DATASETS)}")
    X_all = bunch.data.astype(np.float32)
    if rows < len(y_all):
        keep = np.sort(np.random.default_rng(SPLIT_SEED).choice(len(y_all), rows, replace=False))
        X_all, y_all, source = X_all[keep], y_all[keep], source + f"; a seeded subsample of {rows} rows"
    return Data(name, X_all, y_all, tuneflow_split(len(y_all), None), task="binary", metric="logloss", info={"source": source})


# ---------------------------------------------------------------- one study


def trial_fn(data: Data, max_rounds: int, early_stopping_rounds: int, nthread: int) -> Any:
    """What a trial runs: tuneflow's booster + boosting loop on the resident matrices."""
    from tasks.engine.training import boost, new_booster
    from tasks.problem import objective_params

    fixed = {**objective_params(data.task, 2, data.metric), "seed": 0, "tree_method": "hist", "device": "cpu", "verbosity": 0, "nthread": nthread}

    def train(params: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        booster = new_booster({**params, **fixed}, [data.dtrain, data.dvalid], None)
        log = boost(booster, data.dtrain, data.dvalid, start=0, rounds=max_rounds, early_stopping_rounds=early_stopping_rounds, maximize=data.maximize)
        best_iteration, value = log.best if log.best is not None else (len(log.history) - 1, math.nan)
        return {"value": float(value), "best_iteration": int(best_iteration), "rounds": len(log.history), "train_s": round(time.perf_counter() - started, 4)}

    return train


def run_one(
    data: Data, choice: Any, seed: int, *, trials: int, parallelism: int, max_rounds: int, early_stopping_rounds: int, nthread: int,
    storage: Path, study_name: str, prepare: Any = None,
) -> dict[str, Any]:
    """One study: open it (tuneflow's opener and sampler), `prepare(study)` (e.g. a warm start), run
    tuneflow's loop with a thread-pool submit; the finished trials in the order they were told."""
    from optuna.trial import TrialState

    from tasks.tuning.loop import run_study
    from tasks.tuning.samplers import build_sampler
    from tasks.tuning.search_space import DEFAULT_SPACE, as_space
    from tasks.tuning.studies import open_study

    space = as_space(DEFAULT_SPACE)
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = open_study(str(storage), study_name, data.direction, seed, sampler=lambda s: build_sampler(choice, space, s))
    prepared = prepare(study) if prepare else None
    train = trial_fn(data, max_rounds, early_stopping_rounds, nthread)
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="trial") as pool, common.TreeMonitor(interval=0.5) as mon:
        t0 = time.time()
        outcome = run_study(study, space, n_trials=trials, timeout=None, parallelism=parallelism, submit=lambda number, params: pool.submit(train, params))
        wall = time.time() - t0
    from tasks.tuning.records import RESULT_ATTR

    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete]
    finished.sort(key=lambda t: (t.datetime_complete, t.number))
    points = []
    for t in finished:
        res = t.user_attrs.get(RESULT_ATTR) or {}
        ok = t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)
        points.append({
            "number": t.number, "state": t.state.name, "value": float(t.value) if ok else None, "t": round(t.datetime_complete.timestamp() - t0, 4),
            "rounds": res.get("rounds"), "train_s": res.get("train_s"),
        })
    train_s = [p["train_s"] for p in points if p["train_s"] is not None]
    return {
        "study": study_name, "sampler": choice.name.value, "reason": choice.reason, "prepared": prepared, "points": points,
        "completed": outcome.completed, "failed": outcome.failed, "wall_s": round(wall, 3), "loop_s": round(outcome.seconds, 3),
        "stopped_by": outcome.stopped_by, "train_s_sum": round(sum(train_s), 3), "train_s_median": round(statistics.median(train_s), 4) if train_s else None,
        "slot_utilisation": outcome.slot_utilisation, "monitor": mon.report(),
        "best_params": dict(study.best_trial.params) if outcome.completed else None,
        "best_value": float(study.best_value) if outcome.completed else None,
    }


# ---------------------------------------------------------------- curves and summary


def best_curve(points: list[dict[str, Any]], maximize: bool) -> list[float | None]:
    """Best-so-far after each finished trial (None until a trial completes)."""
    out: list[float | None] = []
    best: float | None = None
    for p in points:
        v = p["value"]
        if v is not None and (best is None or (v > best if maximize else v < best)):
            best = v
        out.append(best)
    return out


def best_after(curve: list[float | None], n: int) -> float | None:
    return curve[min(n, len(curve)) - 1] if curve and n > 0 else None


def first_reaching(points: list[dict[str, Any]], target: float | None, maximize: bool) -> tuple[int | None, float | None]:
    """(finished trials, wall s) when the best-so-far first reaches `target`; (None, None) if never."""
    if target is None:
        return None, None
    for i, p in enumerate(points, 1):
        v = p["value"]
        if v is not None and (v >= target - 1e-12 if maximize else v <= target + 1e-12):
            return i, p["t"]
    return None, None


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median, min, max over seeds; None (not reached) counts as +inf, so a median is given only
    when at least half of the seeds have a value."""
    vals = [math.inf if v is None else float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "with_value": 0}
    fin = lambda x: None if math.isinf(x) else round(x, 6)  # noqa: E731
    return {"median": fin(statistics.median(vals)), "min": fin(min(vals)), "max": fin(max(vals)), "n": len(vals),
            "with_value": sum(v is not None for v in values)}


def value_spread(values: list[float | None], maximize: bool) -> dict[str, Any]:
    """Median, worst, best of scores over seeds (None left out)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "worst": None, "best": None, "n": 0}
    return {"median": round(statistics.median(vals), 6), "worst": round(min(vals) if maximize else max(vals), 6),
            "best": round(max(vals) if maximize else min(vals), 6), "n": len(vals)}


def checkpoints(trials: int) -> list[int]:
    return sorted({max(1, round(trials * f)) for f in CHECKPOINTS})


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    p = result["params"]
    trials, marks = p["trials"], checkpoints(p["trials"])
    out: dict[str, Any] = {}
    for ds in p["datasets"]:
        info = result["datasets"].get(ds)
        if not info:
            continue
        maximize = info["direction"] == "maximize"
        runs = [r for r in result["runs"] if r["dataset"] == ds and not r.get("skipped")]
        targets: dict[int, dict[str, Any]] = {}
        for r in runs:
            if r["tool"] == "random":
                curve = best_curve(r["points"], maximize)
                targets[r["seed"]] = {"value": best_after(curve, trials), "wall_s": r["points"][min(trials, len(r["points"])) - 1]["t"] if r["points"] else None}
        tools: dict[str, Any] = {}
        for tool in p["tools"]:
            rs = sorted((r for r in runs if r["tool"] == tool), key=lambda r: r["seed"])
            if not rs:
                continue
            per_seed = {}
            for r in rs:
                curve = best_curve(r["points"], maximize)
                n, t = first_reaching(r["points"], targets.get(r["seed"], {}).get("value"), maximize)
                per_seed[str(r["seed"])] = {
                    "trials_to_target": n, "wall_to_target_s": t, "best_at": {str(m): best_after(curve, m) for m in marks},
                    "wall_s": r["wall_s"], "completed": r["completed"], "failed": r["failed"], "sampler": r["sampler"],
                    "other_processes_cores": r["monitor"]["other_processes_cores"], "train_s_median": r["train_s_median"],
                }
            seeds = list(per_seed.values())
            ttt = spread([s["trials_to_target"] for s in seeds])
            tools[tool] = {
                "sampler": sorted({s["sampler"] for s in seeds}), "reason": rs[0]["reason"], "seeds": [r["seed"] for r in rs],
                "trials_to_target": ttt, "share_of_trials": round(ttt["median"] / trials, 4) if ttt["median"] is not None else None,
                "wall_to_target_s": spread([s["wall_to_target_s"] for s in seeds]),
                "best_at": {str(m): value_spread([s["best_at"][str(m)] for s in seeds], maximize) for m in marks},
                "wall_s": spread([s["wall_s"] for s in seeds]), "other_processes_cores": spread([s["other_processes_cores"] for s in seeds]),
                "train_s_median": spread([s["train_s_median"] for s in seeds]), "per_seed": per_seed,
            }
        entry: dict[str, Any] = {"targets": {str(k): v for k, v in sorted(targets.items())}, "tools": tools}
        if "auto" in tools and targets:
            med = tools["auto"]["trials_to_target"]["median"]
            entry["goal"] = {
                "what": f"auto reaches random search's {trials}-trial best in <= {GOAL_FRACTION:g} of the trials ({trials * GOAL_FRACTION:g}), median over seeds",
                "auto_sampler": tools["auto"]["sampler"], "per_seed": [s["trials_to_target"] for s in tools["auto"]["per_seed"].values()],
                "median": med, "met": med is not None and med <= trials * GOAL_FRACTION,
            }
        out[ds] = entry
    goals = [e["goal"]["met"] for e in out.values() if "goal" in e]
    result_goal = {"met_on_every_dataset": bool(goals) and all(goals), "datasets": {ds: e["goal"]["met"] for ds, e in out.items() if "goal" in e}}
    return {"datasets": out, "goal": result_goal}


# ---------------------------------------------------------------- output


def fmt_trials(s: dict[str, Any], none: str = "not reached") -> str:
    if not s or not s.get("n"):
        return ""
    f = lambda v: none if v is None else f"{v:g}"  # noqa: E731
    if s["n"] == 1:
        return f(s["median"])
    text = f"{f(s['median'])} [{f(s['min'])}, {f(s['max'])}]"
    return text + (f" ({s['with_value']}/{s['n']})" if s["with_value"] < s["n"] else "")


def fmt_value(s: dict[str, Any]) -> str:
    if not s or not s.get("n"):
        return ""
    return f"{s['median']:.5f}" if s["n"] == 1 else f"{s['median']:.5f} [{s['worst']:.5f}, {s['best']:.5f}]"


def markdown(result: dict[str, Any], png: str | None) -> str:
    p, summary = result["params"], result["summary"]
    trials, marks = p["trials"], checkpoints(p["trials"])
    text = common.header("Samplers: best-so-far against trials and wall time, vs random search", result["command"], result)
    env = result["environment"]
    text += (
        f"Each (dataset, tool, seed) is one study: tuneflow's `choose_sampler`/`build_sampler`/`open_study` (journal file) and `run_study` "
        f"with {p['parallelism']} trials in flight on a thread pool; a trial is tuneflow's `new_booster` + `boost` on one resident "
        f"QuantileDMatrix pair (hist, max_bin 256, nthread {p['nthread']}, at most {p['max_rounds']} rounds, early stopping after "
        f"{p['early_stopping_rounds']}); tuneflow's default space (7 numeric parameters); {trials} trials; seeds {', '.join(map(str, p['seeds']))}. "
        f"Target: random search's best after {trials} finished trials (same seed). Trials are counted in the order they finished. "
        "Cells: median [min, max] over seeds (scores: median [worst, best]); (k/n): seeds that reached the target "
        "(a median needs half of them).\n\n"
        f"`auto` here: **{env['auto']['sampler']}** ({env['auto']['reason']}). torch {'installed' if env['torch'] else 'not installed'}"
        f"{' (hidden by --without-torch)' if p.get('without_torch') else ''}. Without torch (as in CI) `auto` picks "
        f"**{env['auto_without_torch']['sampler']}** ({env['auto_without_torch']['reason']}): its figures are the `tpe` row.\n\n"
    )
    goal = summary["goal"]
    if goal["datasets"]:
        text += "**Goal** (auto reaches random search's best in <= 1/2 of the trials on every dataset, median over seeds): " + ", ".join(
            f"{ds} **{'MET' if met else 'NOT MET'}**" for ds, met in goal["datasets"].items()) + f"; overall **{'MET' if goal['met_on_every_dataset'] else 'NOT MET'}**.\n\n"
    if png:
        text += f"![best-so-far against trials and wall time]({png})\n\n"
    for ds in p["datasets"]:
        s, d = summary["datasets"].get(ds), result["datasets"].get(ds)
        if not s or not d:
            continue
        text += (f"### {ds}\n\n{d['source']}: {d['rows']:,} rows (train {d['train_rows']:,} / valid {d['valid_rows']:,}), {d['features']} features "
                 f"({d['categorical_features']} categorical), {d['task']}, valid **{d['metric']}** ({d['direction']}).\n\n")
        if s["targets"]:
            text += common.md_table([{"seed": k, f"random's best at {trials} trials": f"{v['value']:.5f}" if v["value"] is not None else None,
                                      f"random's wall s to {trials} trials": v["wall_s"]} for k, v in s["targets"].items()]) + "\n"
        rows = []
        for tool in p["tools"]:
            t = s["tools"].get(tool)
            if not t:
                continue
            row = {"tool": tool + (f" ({', '.join(t['sampler'])})" if tool == "auto" else ""), "trials to target": fmt_trials(t["trials_to_target"]),
                   f"/ {trials}": "" if t["share_of_trials"] is None else f"{t['share_of_trials']:.2f}"}
            row.update({f"best @{m}": fmt_value(t["best_at"][str(m)]) for m in marks})
            row.update({"wall s": fmt_trials(t["wall_s"], ""), "wall s to target": fmt_trials(t["wall_to_target_s"]),
                        "trial s (median)": fmt_trials(t["train_s_median"], ""), "other CPU (cores)": fmt_trials(t["other_processes_cores"], "")})
            rows.append(row)
        text += common.md_table(rows)
        if "goal" in s:
            g = s["goal"]
            text += f"\nGoal on {ds}: auto ({', '.join(g['auto_sampler'])}) trials to target per seed {g['per_seed']}, median {g['median']} (<= {trials * GOAL_FRACTION:g}?): **{'MET' if g['met'] else 'NOT MET'}**.\n"
        text += "\n"
    skipped = [r for r in result["runs"] if r.get("skipped")]
    if skipped:
        text += "Skipped: " + "; ".join(sorted({f"{r['tool']}: {r['skipped']}" for r in skipped})) + "\n\n"
    text += ("Seeds are shared: the start-up trials of TPE (8), GP (10) and NSGA-II (its first generation, 50) are drawn by a "
             "RandomSampler with the run's seed, so they are random search's own first configurations (in the order they finish, which "
             "the two slots can change); `auto` and `gp` are the same sampler with the same seed here and differ only by that ordering.\n\n")
    text += ("Wall seconds run from `run_study`'s call to its return and include the sampler's own time in the loop thread (GP's "
             "model fit is most of its wall time at these trial sizes); `other CPU` is what processes outside this benchmark used meanwhile.\n")
    return text


COLORS = {"auto": "#d62728", "tpe": "#1f77b4", "random": "#7f7f7f", "qmc": "#9467bd", "gp": "#ff7f0e", "cmaes": "#2ca02c", "nsga2": "#8c564b", "grid": "#e377c2"}


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Per dataset (columns): median best-so-far over seeds against trials (top) and wall time (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, summary = result["params"], result["summary"]["datasets"]
    datasets = [d for d in p["datasets"] if any(r["dataset"] == d and not r.get("skipped") and r["points"] for r in result["runs"])]
    if not datasets:
        return None
    fig, axes = plt.subplots(2, len(datasets), figsize=(6.2 * len(datasets) + 2.9, 8.4), squeeze=False)
    for col, ds in enumerate(datasets):
        maximize = result["datasets"][ds]["direction"] == "maximize"
        runs = [r for r in result["runs"] if r["dataset"] == ds and not r.get("skipped") and r["points"]]
        ax_n, ax_t = axes[0][col], axes[1][col]
        tmax = max(q["t"] for r in runs for q in r["points"])
        grid = np.geomspace(max(tmax / 1e4, 1e-3), tmax, 500)
        shown: list[float] = []
        for tool in p["tools"]:
            rs = [r for r in runs if r["tool"] == tool]
            if not rs:
                continue
            curves = [best_curve(r["points"], maximize) for r in rs]
            n = max(len(c) for c in curves)
            ys = np.array([[np.nan if (c[i] if i < len(c) else c[-1]) is None else (c[i] if i < len(c) else c[-1]) for i in range(n)] for c in curves], dtype=float)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                med = np.nanmedian(ys, 0)
            label = tool + (f" ({rs[0]['sampler']})" if tool == "auto" else "")
            lw = 2.4 if tool == "auto" else 1.4
            ax_n.step(np.arange(1, n + 1), med, where="post", color=COLORS.get(tool), lw=lw, label=label)
            shown += [v for v in med[n // 10:] if np.isfinite(v)]
            yt = []
            for r in rs:
                c = best_curve(r["points"], maximize)
                ts = [q["t"] for q in r["points"]]
                idx = np.searchsorted(ts, grid, side="right") - 1
                yt.append([np.nan if i < 0 or c[i] is None else c[i] for i in idx])
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax_t.step(grid, np.nanmedian(np.array(yt, dtype=float), 0), where="post", color=COLORS.get(tool), lw=lw, label=label)
        tv = [v["value"] for v in summary.get(ds, {}).get("targets", {}).values() if v.get("value") is not None]
        for ax in (ax_n, ax_t):
            if tv:
                ax.axhline(statistics.median(tv), color="k", ls="--", lw=1, label=f"target: random's {p['trials']}-trial best (median)")
            ax.grid(alpha=0.3)
            ax.set_ylabel(f"best-so-far valid {result['datasets'][ds]['metric']}")
        ax_n.axvline(p["trials"] * GOAL_FRACTION, color="#d62728", ls=":", lw=1, label="goal: 1/2 of the trials")
        if shown:
            lo, hi = min(shown + tv), max(shown + tv)
            pad = 0.08 * (hi - lo + 1e-6)
            for ax in (ax_n, ax_t):
                ax.set_ylim(lo - pad, hi + pad)
        ax_n.set_xlim(1, p["trials"])
        t_first = min((q["t"] for r in runs for q in r["points"] if q["t"] > 0), default=tmax / 100)
        ax_t.set_xscale("log")  # the samplers' wall times differ by up to ~10x
        ax_t.set_xlim(t_first * 0.8, tmax * 1.05)
        ax_n.set_title(f"{ds} ({result['datasets'][ds]['rows']:,} rows): median over {len(p['seeds'])} seed(s)")
        ax_n.set_xlabel("finished trials")
        ax_t.set_xlabel("wall time from run_study's start (s, log scale)")
    return common.save_figure(fig, list(axes.flat), path, legend_inches=2.9, dpi=110)


def write(result: dict[str, Any], a: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    result["summary"] = summarize(result)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(result, a.out_dir / f"{a.name}.png") if result["runs"] else None
    if png is None:
        (a.out_dir / f"{a.name}.png").unlink(missing_ok=True)
    js, md = common.write_results(a.name, result, markdown(result, png.name if png else None), a.out_dir)
    return js, md, png


# ---------------------------------------------------------------- driver


def hide_torch() -> None:
    """Make tuneflow see no torch (as in CI): `auto` then picks TPE and `gp` is refused."""
    from tasks.tuning import samplers

    samplers.gp_available = lambda: False


def environment(trials: int) -> dict[str, Any]:
    from tasks.tuning import samplers
    from tasks.tuning.search_space import DEFAULT_SPACE, as_space

    space = as_space(DEFAULT_SPACE)
    auto = samplers.choose_sampler("auto", space, trials, 1)
    real = samplers.gp_available
    samplers.gp_available = lambda: False
    try:
        ci = samplers.choose_sampler("auto", space, trials, 1)
    finally:
        samplers.gp_available = real
    return {"torch": real(), "auto": {"sampler": auto.name.value, "reason": auto.reason}, "auto_without_torch": {"sampler": ci.name.value, "reason": ci.reason}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=100, help="trials per study (and of the random search that sets the target)")
    p.add_argument("--tools", default=DEFAULT_TOOLS, help=f"comma-separated, some of {','.join(TOOLS)} (tuneflow's --sampler values)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds")
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help=f"comma-separated, some of {','.join(DATASETS)}")
    p.add_argument("--rows", type=int, default=5000, help="rows of the churn sample; the scikit-learn sets are capped at this")
    p.add_argument("--parallelism", type=int, default=2, help="trials in flight (tuneflow's default: 2)")
    p.add_argument("--nthread", type=int, default=1, help="XGBoost threads per trial")
    p.add_argument("--max-rounds", type=int, default=200)
    p.add_argument("--early-stopping-rounds", type=int, default=20)
    p.add_argument("--without-torch", action="store_true", help="hide torch from tuneflow (as in CI): auto picks TPE, gp is skipped")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default=NAME, help="results name: <out-dir>/<name>.json, .md, .png")
    p.add_argument("--work", type=Path, default=common.WORK / "samplers", help="scratch: the studies' journal files")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md and <name>.png from <name>.json and stop")
    a = p.parse_args(argv)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        paths = write(result, a)
        print(f"[samplers] wrote {', '.join(str(x) for x in paths if x)}", flush=True)
        return result
    tools = [t for t in a.tools.split(",") if t]
    datasets = [d for d in a.datasets.split(",") if d]
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    bad = [t for t in tools if t not in TOOLS] + [d for d in datasets if d not in DATASETS]
    if bad or not tools or not datasets or not seeds or a.trials < 1:
        raise SystemExit(f"unknown or missing tool(s)/dataset(s) {bad}; tools: {TOOLS}, datasets: {DATASETS}")
    import optuna

    from tasks.errors import TuneflowError
    from tasks.tuning.samplers import choose_sampler
    from tasks.tuning.search_space import DEFAULT_SPACE, as_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if a.without_torch:
        hide_torch()
    space = as_space(DEFAULT_SPACE)
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    args = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {
        "benchmark": "samplers", "machine": common.machine(), "command": ("python benchmarks/samplers.py " + " ".join(args)).strip(),
        "params": {"trials": a.trials, "tools": tools, "seeds": seeds, "datasets": datasets, "rows": a.rows, "parallelism": a.parallelism,
                   "nthread": a.nthread, "max_rounds": a.max_rounds, "early_stopping_rounds": a.early_stopping_rounds, "without_torch": a.without_torch,
                   "space": {k: v for k, v in DEFAULT_SPACE.items()}, "split": "tasks.data.shard.split_of, 80/10/10, seed 0", "checkpoints": checkpoints(a.trials)},
        "versions": common.versions("optuna", "xgboost", "torch", "scikit-learn", "numpy"),
        "environment": environment(a.trials), "datasets": {}, "runs": [],
    }
    if "random" not in tools:
        print("[samplers] note: without the random tool there is no target: only the curves and the best at 25/50/100% are reported", flush=True)
    print(f"[samplers] auto -> {result['environment']['auto']['sampler']}: {result['environment']['auto']['reason']}", flush=True)
    started = time.time()
    for ds_name in datasets:
        data = load_dataset(ds_name, a.rows)
        result["datasets"][ds_name] = data.info
        print(f"[samplers] {ds_name}: train {data.info['train_rows']:,} / valid {data.info['valid_rows']:,} rows, {data.info['metric']}", flush=True)
        for seed in seeds:
            for tool in tools:
                base = {"dataset": ds_name, "tool": tool, "seed": seed}
                try:
                    choice = choose_sampler(tool, space, a.trials, 1)
                except TuneflowError as exc:
                    note = str(exc).strip()
                    print(f"[samplers] {ds_name} seed {seed} {tool}: skipped ({note})", flush=True)
                    result["runs"].append({**base, "skipped": note})
                    continue
                storage = a.work / f"{ds_name}-{tool}-s{seed}.journal"
                storage.unlink(missing_ok=True)
                row = run_one(data, choice, seed, trials=a.trials, parallelism=a.parallelism, max_rounds=a.max_rounds,
                              early_stopping_rounds=a.early_stopping_rounds, nthread=a.nthread, storage=storage, study_name=f"samplers-{ds_name}-{tool}-s{seed}")
                storage.unlink(missing_ok=True)
                result["runs"].append({**base, **row})
                best = best_curve(row["points"], data.maximize)
                print(f"[samplers] {ds_name} seed {seed} {tool} ({row['sampler']}): {row['completed']} completed, {row['failed']} failed, "
                      f"best {best[-1] if best else None}, {row['wall_s']} s (other CPU {row['monitor']['other_processes_cores']} cores) "
                      f"[{time.time() - started:.0f} s so far]", flush=True)
            write(result, a)  # after every seed: a cut-off run still reports what it measured
    result["total_s"] = round(time.time() - started, 1)
    js, md, png = write(result, a)
    for ds, s in result["summary"]["datasets"].items():
        for tool, t in s["tools"].items():
            print(f"[samplers] {ds} {tool}: trials to target {fmt_trials(t['trials_to_target'])}, best @{a.trials} {fmt_value(t['best_at'][str(checkpoints(a.trials)[-1])])}, "
                  f"wall {fmt_trials(t['wall_s'], '')} s", flush=True)
        if "goal" in s:
            print(f"[samplers] {ds} goal ({s['goal']['what']}): {'MET' if s['goal']['met'] else 'NOT MET'} (per seed {s['goal']['per_seed']})", flush=True)
    print(f"[samplers] wrote {js}, {md}" + (f" and {png}" if png else "") + f" in {result['total_s']} s", flush=True)
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    main()
