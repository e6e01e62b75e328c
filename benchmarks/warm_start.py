"""Warm start: does a study on a changed data version reach the earlier study's best sooner when
seeded from the earlier study?

    .venv/bin/python benchmarks/warm_start.py                  # 6,000 + 30% rows, 60 trials per study, 3 seeds (a few minutes on 2 cores)
    .venv/bin/python benchmarks/warm_start.py --rows 1500 --trials 6 --seeds 0 --max-rounds 30 --out-dir /tmp/ws   # smoke (seconds)
    .venv/bin/python benchmarks/warm_start.py --render         # rewrite the .md from the .json

The goal it measures: "a warm-started study on a changed data version reaches the earlier study's
best in <= 1/3 of the trials a cold study needs".

Data: v1 is tuneflow's churn sample (tasks.data.sample.make_churn, seed 7, --rows rows); v2 is v1
plus --new-share (30%) new rows from the same generator with another seed (8), their customer ids
after v1's. Both are split by tuneflow's own split (tasks.data.shard.split_of on the row key
customer_id, 80/10/10, seed 0), so every v1 row keeps its split in v2 and v2's valid split is v1's
plus new rows. Binary, valid AUC.

Per seed, with tuneflow's pieces as the flow wires them (choose_sampler(--sampler, auto by
default), open_study with build_sampler, run_study with a thread-pool submit; trials as in
benchmarks/samplers.py: tuneflow's new_booster + boost on resident QuantileDMatrix pairs):
  1. v1: a --trials-trial study on v1, stamped with StudyIdentity(fingerprint=v1's);
  2. cold: a --trials-trial study on v2 in a storage of its own (nothing to warm-start from);
  3. warm: a --trials-trial study on v2 in v1's storage, first `seed_new_study(study, storage,
     "auto", identity_v2)`, which finds the v1 study (same dataset, task, metric, objectives and
     space; other fingerprint) and enqueues its top-5 configurations; then stamped with identity_v2.
Same sampler, seed and budget for cold and warm. The v1 study's seed is SEED + --v1-seed-offset
(1000): with one seed for all three, the cold study's random start-up draws would be v1's own, so
it would re-run v1's first configurations (v1's best among them when it was one of those), which
is a warm start by coincidence.

Targets (each reported as finished trials to reach it, cold and warm, median over seeds):
  primary    "the earlier best, on the new data": v1's best configuration trained on v2's train
             split and scored on v2's valid split (the v1 study's best value was measured on v1's
             valid split, a different set of rows).
  as-measured  the v1 study's best value itself (on v1's valid split).
  cold-final   the cold study's best after all its trials.
Goal: median warm trials-to-primary <= 1/3 x median cold trials-to-primary (a cold study that does
not reach it within its budget counts as "more than --trials": then the ratio is an upper bound).
Note that the warm study evaluates v1's best configuration itself among its first trials, and the
training is deterministic (seed 0, nthread 1), so it reaches the primary target within its first
few trials by construction: the other targets and the best at 5/10/20/... trials say more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import samplers as bench  # noqa: E402  (benchmarks/samplers.py: data, trial and study helpers)

NAME = "warm-start"
GOAL_FRACTION = 1 / 3
NEW_ROWS_SEED = 8


def versions_of_data(rows: int, new_share: float) -> tuple[Any, Any]:
    import pandas as pd

    v1 = bench.churn_frame(rows, seed=7)
    extra = bench.churn_frame(int(round(rows * new_share)), seed=NEW_ROWS_SEED, id_offset=rows)
    v2 = pd.concat([v1, extra], ignore_index=True)
    return v1, v2


def fingerprint(df: Any) -> str:
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()[:16]


def evaluate(data: bench.Data, params: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """One configuration trained and scored on `data`, the way the studies' trials are."""
    from tasks.tuning.search_space import DEFAULT_SPACE, as_space

    full = as_space(DEFAULT_SPACE).with_fixed(params)
    return bench.trial_fn(data, a.max_rounds, a.early_stopping_rounds, a.nthread)(full)


def run_seed(seed: int, a: argparse.Namespace, d1: bench.Data, d2: bench.Data, ids: dict[str, Any], choice: Any) -> dict[str, Any]:
    from tasks.tuning.studies import open_storage
    from tasks.tuning.warm_start import seed_new_study, stamp

    shared, cold_store = a.work / f"v1-and-warm-s{seed}.journal", a.work / f"cold-s{seed}.journal"
    for path in (shared, cold_store):
        path.unlink(missing_ok=True)
    common_kw = dict(trials=a.trials, parallelism=a.parallelism, max_rounds=a.max_rounds, early_stopping_rounds=a.early_stopping_rounds, nthread=a.nthread)

    v1_seed = seed + a.v1_seed_offset
    v1 = bench.run_one(d1, choice, v1_seed, storage=shared, study_name=f"ws-v1-s{seed}", prepare=lambda s: stamp(s, ids["v1"]), **common_kw)
    print(f"[warm-start] seed {seed} v1: best {v1['best_value']:.5f} ({v1['completed']} completed, {v1['wall_s']} s)", flush=True)
    again_v1 = evaluate(d1, v1["best_params"], a)
    on_v2 = evaluate(d2, v1["best_params"], a)

    cold = bench.run_one(d2, choice, seed, storage=cold_store, study_name=f"ws-v2-cold-s{seed}", prepare=lambda s: stamp(s, ids["v2"]), **common_kw)

    def warm_up(study: Any) -> Any:
        done = seed_new_study(study, open_storage(str(shared)), "auto", ids["v2"])
        stamp(study, ids["v2"])
        return done

    warm = bench.run_one(d2, choice, seed, storage=shared, study_name=f"ws-v2-warm-s{seed}", prepare=warm_up, **common_kw)
    if not warm["prepared"] or warm["prepared"].get("mode") != "enqueued" or warm["prepared"].get("from") != f"ws-v1-s{seed}":
        raise SystemExit(f"[warm-start] seed {seed}: seed_new_study did not enqueue from the v1 study: {warm['prepared']}")
    for path in (shared, cold_store):
        path.unlink(missing_ok=True)
    return {
        "seed": seed, "v1_seed": v1_seed, "v1": v1, "cold": cold, "warm": warm,
        "v1_best": {"params": v1["best_params"], "value_on_v1_in_study": v1["best_value"], "value_on_v1_again": again_v1["value"],
                    "value_on_v2": on_v2["value"], "rounds_on_v2": on_v2["rounds"]},
    }


# ---------------------------------------------------------------- summary


def targets_of(row: dict[str, Any], maximize: bool) -> dict[str, float | None]:
    cold_curve = bench.best_curve(row["cold"]["points"], maximize)
    return {"primary": row["v1_best"]["value_on_v2"], "as-measured": row["v1_best"]["value_on_v1_in_study"], "cold-final": cold_curve[-1] if cold_curve else None}


TARGETS = {
    "primary": "the earlier best, on the new data: v1's best configuration trained on v2 train, scored on v2 valid",
    "as-measured": "the v1 study's best value as it measured it (v1's valid split)",
    "cold-final": "the cold study's best after all its trials",
}


def ratio_of(warm: float | None, cold: float | None, trials: int) -> dict[str, Any]:
    """warm / cold trials; cold not reached: an upper bound warm / trials (cold needs more than `trials`)."""
    if warm is None:
        return {"ratio": None, "bound": False, "text": "warm did not reach it"}
    if cold is None:
        return {"ratio": round(warm / trials, 4), "bound": True, "text": f"< {warm / trials:.3g} (cold: not reached in {trials})"}
    return {"ratio": round(warm / cold, 4), "bound": False, "text": f"{warm / cold:.3g}"}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    p = result["params"]
    trials, maximize = p["trials"], result["datasets"]["v2"]["direction"] == "maximize"
    marks = sorted({m for m in (1, 5, 10, 20, 30, 60, 100, trials) if m <= trials})
    per_seed: dict[str, Any] = {}
    for row in result["seeds"]:
        tg = targets_of(row, maximize)
        rec: dict[str, Any] = {"targets": tg, "trials_to": {}, "best_at": {}}
        for arm in ("cold", "warm"):
            pts = row[arm]["points"]
            curve = bench.best_curve(pts, maximize)
            rec["trials_to"][arm] = {k: bench.first_reaching(pts, v, maximize)[0] for k, v in tg.items()}
            rec["best_at"][arm] = {str(m): bench.best_after(curve, m) for m in marks}
            rec[f"{arm}_wall_s"] = row[arm]["wall_s"]
        rec["ratio"] = {k: ratio_of(rec["trials_to"]["warm"][k], rec["trials_to"]["cold"][k], trials) for k in tg}
        rec["warm_start"] = row["warm"]["prepared"]
        rec["v1_best_reproduced"] = row["v1_best"]["value_on_v1_again"] == row["v1_best"]["value_on_v1_in_study"]
        per_seed[str(row["seed"])] = rec
    recs = list(per_seed.values())
    out: dict[str, Any] = {"targets": {}, "best_at": {}, "per_seed": per_seed, "marks": marks}
    for k, what in TARGETS.items():
        cold = bench.spread([r["trials_to"]["cold"][k] for r in recs])
        warm = bench.spread([r["trials_to"]["warm"][k] for r in recs])
        out["targets"][k] = {
            "what": what, "values": [r["targets"][k] for r in recs], "cold_trials": cold, "warm_trials": warm,
            "ratio_of_medians": ratio_of(warm["median"], cold["median"], trials), "per_seed_ratio": [r["ratio"][k]["text"] for r in recs],
        }
    for arm in ("cold", "warm"):
        out["best_at"][arm] = {str(m): bench.value_spread([r["best_at"][arm][str(m)] for r in recs], maximize) for m in marks}
    prim = out["targets"]["primary"]["ratio_of_medians"]
    out["goal"] = {
        "what": f"warm reaches the primary target in <= {GOAL_FRACTION:.3g} of the trials the cold study needs (medians over seeds)",
        "ratio": prim["ratio"], "bound": prim["bound"], "text": prim["text"],
        "met": prim["ratio"] is not None and prim["ratio"] <= GOAL_FRACTION,
    }
    return out


# ---------------------------------------------------------------- output


def markdown(result: dict[str, Any]) -> str:
    p, s = result["params"], result["summary"]
    d1, d2 = result["datasets"]["v1"], result["datasets"]["v2"]
    text = common.header("Warm start on a changed data version: trials to the earlier best, warm vs cold", result["command"], result)
    text += (
        f"v1: {d1['source']}, {d1['rows']:,} rows (train {d1['train_rows']:,} / valid {d1['valid_rows']:,}); v2: v1 plus "
        f"{p['new_share']:.0%} new rows from the same generator (seed {NEW_ROWS_SEED}), {d2['rows']:,} rows (train {d2['train_rows']:,} / "
        f"valid {d2['valid_rows']:,}); tuneflow's split by row key, so v1's rows keep their split. Valid **{d2['metric']}** ({d2['direction']}). "
        f"Sampler `{p['sampler']}` -> **{result['environment']['sampler']}** ({result['environment']['reason']}). Per seed: a {p['trials']}-trial v1 "
        f"study (seed + {p.get('v1_seed_offset', 0)}, so that the cold study does not replay v1's random start-up draws), then on v2 a cold and a warm {p['trials']}-trial study (same sampler and seed); warm = `seed_new_study(study, storage, \"auto\", "
        f"identity_v2)`, which enqueued v1's top {result['environment']['top_k']} configurations. {p['parallelism']} trials in flight, at most "
        f"{p['max_rounds']} rounds, early stopping {p['early_stopping_rounds']}; seeds {', '.join(map(str, p['seeds']))}. Trials counted in the "
        "order they finished. Cells: median [min, max] over seeds; (k/n): seeds that reached the target.\n\n"
    )
    g = s["goal"]
    text += f"**Goal** ({g['what']}): warm / cold = {g['text']}: **{'MET' if g['met'] else 'NOT MET'}**.\n\n"
    rows = []
    for k, t in s["targets"].items():
        rows.append({
            "target": f"{k}: {t['what']}", "value (per seed)": ", ".join(f"{v:.5f}" if v is not None else "-" for v in t["values"]),
            "cold trials": bench.fmt_trials(t["cold_trials"]), "warm trials": bench.fmt_trials(t["warm_trials"]),
            "warm / cold": t["ratio_of_medians"]["text"], "per seed": "; ".join(t["per_seed_ratio"]),
        })
    text += common.md_table(rows) + "\n"
    brows = []
    for arm in ("cold", "warm"):
        brows.append({"study on v2": arm, **{f"best @{m}": bench.fmt_value(s["best_at"][arm][str(m)]) for m in s["marks"]},
                      "wall s": ", ".join(str(r[f"{arm}_wall_s"]) for r in s["per_seed"].values())})
    text += "Best-so-far valid AUC on v2 after n finished trials (median [worst, best] over seeds):\n\n" + common.md_table(brows) + "\n"
    srows = []
    for seed, r in s["per_seed"].items():
        row = next(x for x in result["seeds"] if str(x["seed"]) == seed)
        srows.append({"seed": seed, "v1 best (v1 valid)": f"{row['v1_best']['value_on_v1_in_study']:.5f}", "v1 best config on v2": f"{row['v1_best']['value_on_v2']:.5f}",
                      "reproduced on v1": r["v1_best_reproduced"], "warm start": f"{r['warm_start']['mode']} {r['warm_start']['trials']} from {r['warm_start']['from']}",
                      "v1 wall s": row["v1"]["wall_s"], "other CPU (cores, v1/cold/warm)": "/".join(str(row[x]["monitor"]["other_processes_cores"]) for x in ("v1", "cold", "warm"))})
    text += common.md_table(srows) + "\n"
    text += (
        "The warm study's first trials are v1's top configurations, v1's best among them, and training is deterministic (seed 0, nthread 1, "
        "`reproduced on v1`), so warm reaches the primary target within its first few trials by construction whenever the cold study needs "
        "more than that; `as-measured` and `cold-final` and the best after n trials are the less circular comparisons.\n"
    )
    return text


def write(result: dict[str, Any], a: argparse.Namespace) -> tuple[Path, Path]:
    result["summary"] = summarize(result) if result["seeds"] else {}
    if not result["seeds"]:
        return common.write_results(a.name, result, "## Warm start\n\n(no seed finished)\n\n| --- |\n", a.out_dir)
    return common.write_results(a.name, result, markdown(result), a.out_dir)


# ---------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=60, help="trials of each study (v1, cold, warm)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds (each one a v1, cold and warm study)")
    p.add_argument("--rows", type=int, default=6000, help="rows of v1")
    p.add_argument("--new-share", type=float, default=0.3, help="v2 = v1 + this share of new rows")
    p.add_argument("--sampler", default="auto", help="tuneflow's --sampler for every study")
    p.add_argument("--v1-seed-offset", type=int, default=1000, help="the v1 study's seed is SEED + this (0: the same seed as the v2 studies)")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--nthread", type=int, default=1)
    p.add_argument("--max-rounds", type=int, default=200)
    p.add_argument("--early-stopping-rounds", type=int, default=20)
    p.add_argument("--without-torch", action="store_true", help="hide torch from tuneflow (as in CI): auto picks TPE")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default=NAME, help="results name: <out-dir>/<name>.json, .md")
    p.add_argument("--work", type=Path, default=common.WORK / "warm-start", help="scratch: the studies' journal files")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    a = p.parse_args(argv)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        print(f"[warm-start] wrote {', '.join(map(str, write(result, a)))}", flush=True)
        return result
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    if not seeds or a.trials < 1 or not 0 < a.new_share:
        raise SystemExit("need --seeds, --trials >= 1 and --new-share > 0")
    import optuna

    from tasks.tuning.samplers import choose_sampler
    from tasks.tuning.search_space import DEFAULT_SPACE, as_space
    from tasks.tuning.studies import space_hash
    from tasks.tuning.warm_start import TOP_K, StudyIdentity

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if a.without_torch:
        bench.hide_torch()
    space = as_space(DEFAULT_SPACE)
    choice = choose_sampler(a.sampler, space, a.trials, 1)
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    v1_df, v2_df = versions_of_data(a.rows, a.new_share)
    d1 = bench.churn_data(v1_df, "v1", {"fingerprint": fingerprint(v1_df)})
    d2 = bench.churn_data(v2_df, "v2", {"fingerprint": fingerprint(v2_df), "new_rows": len(v2_df) - len(v1_df)})
    ident = lambda fp: StudyIdentity("churn", fp, "binary", "auc", "auc", space_hash(space))  # noqa: E731
    ids = {"v1": ident(d1.info["fingerprint"]), "v2": ident(d2.info["fingerprint"])}
    args = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {
        "benchmark": "warm_start", "machine": common.machine(), "command": ("python benchmarks/warm_start.py " + " ".join(args)).strip(),
        "params": {"trials": a.trials, "seeds": seeds, "rows": a.rows, "new_share": a.new_share, "sampler": a.sampler, "parallelism": a.parallelism,
                   "nthread": a.nthread, "v1_seed_offset": a.v1_seed_offset, "max_rounds": a.max_rounds, "early_stopping_rounds": a.early_stopping_rounds, "without_torch": a.without_torch,
                   "goal_fraction": GOAL_FRACTION, "targets": TARGETS},
        "versions": common.versions("optuna", "xgboost", "torch", "numpy"),
        "environment": {"sampler": choice.name.value, "reason": choice.reason, "top_k": TOP_K},
        "datasets": {"v1": d1.info, "v2": d2.info}, "identities": {k: v.__dict__ for k, v in ids.items()}, "seeds": [],
    }
    print(f"[warm-start] sampler {a.sampler} -> {choice.name.value} ({choice.reason}); v1 {len(v1_df):,} rows, v2 {len(v2_df):,} rows", flush=True)
    for seed in seeds:
        row = run_seed(seed, a, d1, d2, ids, choice)
        result["seeds"].append(row)
        write(result, a)
        rec = result["summary"]["per_seed"][str(seed)]
        print(f"[warm-start] seed {seed}: targets {rec['targets']}; trials to them cold {rec['trials_to']['cold']}, warm {rec['trials_to']['warm']} "
              f"[{time.time() - started:.0f} s so far]", flush=True)
    result["total_s"] = round(time.time() - started, 1)
    js, md = write(result, a)
    s = result["summary"]
    for k, t in s["targets"].items():
        print(f"[warm-start] {k}: trials to it cold {bench.fmt_trials(t['cold_trials'])}, warm {bench.fmt_trials(t['warm_trials'])}, warm/cold {t['ratio_of_medians']['text']}", flush=True)
    print(f"[warm-start] goal ({s['goal']['what']}): {'MET' if s['goal']['met'] else 'NOT MET'} ({s['goal']['text']})", flush=True)
    print(f"[warm-start] wrote {js}, {md} in {result['total_s']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
