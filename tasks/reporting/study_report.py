"""One self-contained static HTML page for a study: what people look at after a run.

`render_study_report(study, result)` draws, from the study's trials and the run's result (a
RunResult, or None for a study read back on its own):

- best-so-far against elapsed time (every finished trial, the running best as a step line);
- learning curves (valid metric per boosting round) of the best trials, from `tuneflow:curve`;
- pruning rungs (each trial's reported values per step) when any trial reported one;
- parallel coordinates and parameter importances (Optuna's fANOVA; a note instead when the
  study has too few trials for it);
- the Pareto front when the study has several objectives;
- resources per trial: wall and CPU seconds, peak memory, GPU use where measured.

plotly.js is embedded once, inline: the page opens offline, from a file, an object store or an
MLflow artifact view, and asks no CDN for anything.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from tasks.tuning.curves import curve_points, top_trials
from tasks.tuning.records import RESULT_ATTR
from tasks.tuning.warm_start import IDENTITY_ATTR

MAX_TABLE_ROWS = 500
MIN_IMPORTANCE_TRIALS = 3
COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#9a9a9a", "FAIL": "#d62728"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


class _Page:
    """The page's sections; the first figure carries plotly.js inline, the others reuse it."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.js_included = False

    def figure(self, title: str, fig: go.Figure | None, note: str = "", anchor: str = "") -> None:
        body = ""
        if fig is not None:
            fig.update_layout(template="plotly_white", margin={"l": 60, "r": 30, "t": 40, "b": 50}, height=fig.layout.height or 420)
            body = fig.to_html(full_html=False, include_plotlyjs=not self.js_included, config=PLOT_CONFIG, div_id=f"fig-{anchor or len(self.sections)}")
            self.js_included = True
        self.section(title, body + (f'<p class="note">{html.escape(note)}</p>' if note else ""), anchor)

    def section(self, title: str, body: str, anchor: str = "") -> None:
        self.sections.append(f'<section id="{html.escape(anchor)}"><h2>{html.escape(title)}</h2>{body}</section>')


def render_study_report(study: optuna.Study, result: Mapping[str, Any] | None = None, *, top_k: int = 3, now: dt.datetime | None = None) -> str:
    """The study's HTML report (a whole page, plotly.js inline)."""
    trials = study.get_trials(deepcopy=False)
    info = _context(study, trials, result)
    page = _Page()
    metric = info["metric"]
    page.figure("Best so far against time", _best_so_far(trials, info), anchor="best-so-far",
                note=f"Each finished trial's {metric} (valid) when it finished; the line is the best so far ({info['direction']}).")
    curves = top_trials(study, top_k, include=info.get("best_trial"))
    page.figure("Learning curves of the best trials", _learning_curves(curves, metric) if curves else None, anchor="learning-curves",
                note="" if curves else "No trial recorded a per-round curve (trials from before curves were kept, or PBT members).")
    if any(t.intermediate_values for t in trials):
        page.figure("Pruning rungs", _rungs(trials, metric), anchor="rungs",
                    note="The value each trial reported at each rung (the step is the rung's resource: boosting rounds, or a data fraction's rank); grey lines were pruned there.")
    multi = len(study.directions) > 1
    target = {"target": lambda t: t.values[0], "target_name": metric} if multi else {"target_name": metric}
    fig, note = _optuna_plot(optuna.visualization.plot_parallel_coordinate, study, **target)
    page.figure("Parallel coordinates", fig, note, anchor="parallel-coordinates")
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    if complete >= MIN_IMPORTANCE_TRIALS:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importance_target = target if multi else {}
        fig, note = _optuna_plot(optuna.visualization.plot_param_importances, study, evaluator=evaluator, **importance_target)
    else:  # Optuna would draw equal importances for every parameter: nothing to read in that
        fig, note = None, f"Not drawn: importances need at least {MIN_IMPORTANCE_TRIALS} complete trials (the study has {complete})."
    page.figure("Parameter importances (fANOVA)", fig, note or f"Share of the variance of {metric} each parameter explains over the complete trials.",
                anchor="importances")
    if multi:
        fig, note = _optuna_plot(optuna.visualization.plot_pareto_front, study, target_names=info["objectives"] or None)
        page.figure("Pareto front", fig, note, anchor="pareto")
        if result and result.get("pareto_front"):
            page.section("Pareto-optimal trials", _pareto_table(result["pareto_front"], info["objectives"]), anchor="pareto-table")
    resources = [t for t in trials if t.user_attrs.get(RESULT_ATTR)]
    page.figure("Resources per trial", _resources_figure(resources) if resources else None, anchor="resources",
                note="" if resources else "No trial recorded its resources.")
    if resources:
        page.section("Trials", _trials_table(trials, metric), anchor="trials")
    return _document(info, page, now or dt.datetime.now(dt.timezone.utc))


# -- context ---------------------------------------------------------------------------------------


def _context(study: optuna.Study, trials: list[FrozenTrial], result: Mapping[str, Any] | None) -> dict[str, Any]:
    ident = dict(study.user_attrs.get(IDENTITY_ATTR) or {})
    result = dict(result or {})
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    direction = result.get("direction") or study.directions[0].name.lower()
    best = None
    if complete:
        pick = max if direction == "maximize" else min
        best = pick(complete, key=lambda t: t.values[0])
    objectives = list(result.get("objectives") or [o for o in str(ident.get("objectives") or "").split(",") if o])
    if len(objectives) != len(study.directions):
        objectives = [f"objective {i}" for i in range(len(study.directions))]
    return {
        "dataset": result.get("dataset") or ident.get("dataset") or "?",
        "fingerprint": result.get("fingerprint") or ident.get("fingerprint") or "",
        "study": study.study_name,
        "metric": result.get("metric") or ident.get("metric") or (objectives[0] if objectives else "value"),
        "direction": direction,
        "objectives": objectives,
        "sampler": result.get("sampler") or type(study.sampler).__name__,
        "sampler_reason": result.get("sampler_reason") or "",
        "best_value": result.get("best_value", best.values[0] if best else None),
        "best_trial": result.get("best_trial", best.number if best else None),
        "registered": result.get("registered") or None,
        "states": {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)},
        "stopped_by": result.get("stopped_by") or "",
        "strategy": " / ".join(str(result[k]) for k in ("strategy", "pruner", "fidelity", "placement") if result.get(k)),
        "cost": result.get("cost_hours"),
        "cpu_hours": result.get("cpu_hours"),
        "gpu_hours": result.get("gpu_hours"),
        "rows": result.get("rows"),
        "report_uri": result.get("report_uri"),
    }


def _document(info: dict[str, Any], page: _Page, now: dt.datetime) -> str:
    e = html.escape
    reg = info["registered"]
    best = info["best_value"]
    facts = [
        ("dataset", f"{info['dataset']}" + (f" ({info['fingerprint']})" if info["fingerprint"] else "")),
        ("study", info["study"]),
        ("sampler", info["sampler"] + (f" ({info['sampler_reason']})" if info["sampler_reason"] else "")),
        (f"best {info['metric']} (valid)", "-" if best is None else f"{best:.6g} (trial {info['best_trial']})"),
    ]
    if reg:
        test = reg.get("test_value")
        facts.append(("registered model", f"{reg.get('model_name')} version {reg.get('version')} (alias {reg.get('alias')})"
                                          + (f", test {info['metric']} {test:.6g}" if isinstance(test, (int, float)) else "")))
    facts.append(("trials", ", ".join(f"{n} {s.lower()}" for s, n in info["states"].items()) or "none"))
    if info["strategy"]:
        facts.append(("strategy", info["strategy"]))
    if info["stopped_by"]:
        facts.append(("stopped by", info["stopped_by"]))
    if info["cost"] is not None:
        facts.append(("compute (this run)", f"{info['cost']:.4f} core-hours held, {info['cpu_hours'] or 0:.4f} CPU-hours used"
                                            + (f", {info['gpu_hours']:.4f} GPU-hours" if info["gpu_hours"] else "")))
    if info["rows"]:
        facts.append(("rows", ", ".join(f"{k} {v}" for k, v in info["rows"].items())))
    header = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    nav = " · ".join(f'<a href="#{a}">{e(t)}</a>' for a, t in _anchors(page.sections))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tuneflow study report: {e(info['study'])}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }}
header {{ background: #1d2330; color: #fff; padding: 18px 28px; }}
header h1 {{ margin: 0 0 4px; font-size: 22px; }} header p {{ margin: 0; color: #b8c0cc; font-size: 13px; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 18px 24px 40px; }}
section {{ background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.08); margin: 16px 0; padding: 12px 18px; }}
h2 {{ font-size: 17px; margin: 6px 0 10px; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ padding: 4px 10px; text-align: left; border-bottom: 1px solid #eceef1; }}
table.facts th {{ color: #5b6474; font-weight: 600; white-space: nowrap; }}
table.grid td.n, table.grid th.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.scroll {{ max-height: 480px; overflow: auto; }}
.note {{ color: #5b6474; font-size: 12px; margin: 6px 0 0; }}
nav {{ font-size: 13px; }} nav a {{ color: #1f77b4; text-decoration: none; }}
</style></head>
<body>
<header><h1>Study {e(info['study'])}</h1><p>tuneflow study report · {e(info['dataset'])} · generated {e(now.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p></header>
<main>
<section id="summary"><table class="facts">{header}</table><p><nav>{nav}</nav></p></section>
{''.join(page.sections)}
</main></body></html>
"""


def _anchors(sections: list[str]) -> list[tuple[str, str]]:
    out = []
    for s in sections:
        anchor = s.split('id="', 1)[1].split('"', 1)[0]
        title = html.unescape(s.split("<h2>", 1)[1].split("</h2>", 1)[0])
        out.append((anchor, title))
    return out


# -- figures ---------------------------------------------------------------------------------------


def _elapsed(trials: list[FrozenTrial]) -> Callable[[FrozenTrial], float]:
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(starts) if starts else dt.datetime.now()
    return lambda t: ((t.datetime_complete or t.datetime_start or t0) - t0).total_seconds()


def _value(t: FrozenTrial) -> float | None:
    if t.state == TrialState.COMPLETE and t.values:
        return float(t.values[0])
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def _best_so_far(trials: list[FrozenTrial], info: dict[str, Any]) -> go.Figure | None:
    elapsed = _elapsed(trials)
    done = sorted((t for t in trials if t.datetime_complete is not None and _value(t) is not None and not math.isnan(_value(t))), key=elapsed)
    if not done:
        return None
    fig = go.Figure()
    for state in ("COMPLETE", "PRUNED"):
        pts = [t for t in done if t.state.name == state]
        if pts:
            fig.add_trace(go.Scatter(
                x=[elapsed(t) for t in pts], y=[_value(t) for t in pts], mode="markers", name=state.lower() + (" (last rung)" if state == "PRUNED" else ""),
                marker={"color": COLOURS[state], "size": 8, "symbol": "circle" if state == "COMPLETE" else "x"},
                text=[f"trial {t.number}" for t in pts], hovertemplate="%{text}<br>%{x:.1f} s<br>%{y:.6g}<extra></extra>",
            ))
    maximize = info["direction"] == "maximize"
    xs, ys, best = [], [], None
    for t in done:
        if t.state != TrialState.COMPLETE:
            continue
        v = float(t.values[0])
        if best is None or (v > best if maximize else v < best):
            best = v
        xs.append(elapsed(t))
        ys.append(best)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": "#ff7f0e", "width": 2.5}, name="best so far"))
    fig.update_layout(xaxis_title="elapsed since the study's first trial (s)", yaxis_title=f"{info['metric']} (valid)")
    return fig


def _learning_curves(trials: list[FrozenTrial], metric: str) -> go.Figure:
    fig = go.Figure()
    for t in trials:
        pts = curve_points(t)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=f"trial {t.number} ({t.values[0]:.5g})"))
    fig.update_layout(xaxis_title="boosting round", yaxis_title=f"{metric} (valid)")
    return fig


def _rungs(trials: list[FrozenTrial], metric: str) -> go.Figure:
    fig = go.Figure()
    steps: set[int] = set()
    shown = set()
    for t in trials:
        if not t.intermediate_values or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        xs = sorted(t.intermediate_values)
        steps.update(xs)
        state = t.state.name
        fig.add_trace(go.Scatter(
            x=xs, y=[t.intermediate_values[s] for s in xs], mode="lines+markers", name=state.lower(), legendgroup=state, showlegend=state not in shown,
            line={"color": COLOURS[state], "width": 1.5 if state == "PRUNED" else 2}, opacity=0.6 if state == "PRUNED" else 0.9,
            text=[f"trial {t.number}"] * len(xs), hovertemplate="%{text}<br>step %{x}<br>%{y:.6g}<extra></extra>",
        ))
        shown.add(state)
    log = len(steps) > 1 and max(steps) / max(1, min(steps)) >= 9
    fig.update_layout(xaxis={"title": "rung step", "type": "log" if log else "linear", "tickvals": sorted(steps)}, yaxis_title=f"{metric} (valid)")
    return fig


def _optuna_plot(make: Callable[..., go.Figure], study: optuna.Study, **options: Any) -> tuple[go.Figure | None, str]:
    """An Optuna plot, or a note saying why there is none (too few trials, one value per parameter)."""
    try:
        with warnings.catch_warnings():  # Optuna's experimental/few-trials warnings are not the reader's concern
            warnings.simplefilter("ignore")
            fig = make(study, **options)
    except Exception as exc:  # e.g. importances need two or more complete trials with varied parameters
        return None, f"Not drawn: {type(exc).__name__}: {str(exc)[:200]}"
    if not fig.data:
        return None, "Not drawn: the study has too few complete trials for it."
    fig.update_layout(title_text="")  # the section's heading says it
    return fig, ""


def _resources(t: FrozenTrial) -> dict[str, Any]:
    r = t.user_attrs.get(RESULT_ATTR) or {}
    return {"seconds": r.get("seconds"), "cpu_s": r.get("cpu_seconds"), "peak_mb": r.get("peak_rss_mb"),
            "gpu_util_pct": r.get("gpu_util_pct"), "gpu_mem_mb": r.get("gpu_mem_peak_mb"), "device": r.get("device"),
            "rounds": r.get("total_rounds") or r.get("rounds"), "attempt": r.get("attempt")}


def _resources_figure(trials: list[FrozenTrial]) -> go.Figure:
    from plotly.subplots import make_subplots

    rows = [(t, _resources(t)) for t in trials]
    gpu = any(r["gpu_mem_mb"] is not None for _, r in rows)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("time per trial (s)", "peak memory per trial (MB)"))
    x = [t.number for t, _ in rows]
    fig.add_trace(go.Bar(x=x, y=[r["seconds"] for _, r in rows], name="wall s", marker_color="#1f77b4"), 1, 1)
    fig.add_trace(go.Bar(x=x, y=[r["cpu_s"] for _, r in rows], name="CPU s", marker_color="#ff7f0e"), 1, 1)
    fig.add_trace(go.Bar(x=x, y=[r["peak_mb"] for _, r in rows], name="peak RSS MB", marker_color="#2ca02c"), 1, 2)
    if gpu:
        fig.add_trace(go.Bar(x=x, y=[r["gpu_mem_mb"] for _, r in rows], name="peak GPU MB", marker_color="#9467bd"), 1, 2)
    fig.update_layout(barmode="group", height=380)
    fig.update_xaxes(title_text="trial")
    return fig


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.5g}"
    return str(v)


def _trials_table(trials: list[FrozenTrial], metric: str) -> str:
    e = html.escape
    shown = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    gpu = any(_resources(t)["gpu_mem_mb"] is not None for t in shown)
    params = sorted({p for t in shown for p in t.params})
    cols = ["seconds", "cpu_s", "peak_mb", *(["gpu_util_pct", "gpu_mem_mb"] if gpu else []), "device", "rounds", "attempt"]
    head = "".join(f'<th class="n">{e(c)}</th>' for c in ["trial", "state", metric, *cols, *params])
    rows = []
    for t in shown[-MAX_TABLE_ROWS:]:
        r = _resources(t)
        value = _value(t)
        cells = [str(t.number), t.state.name.lower(), _fmt(value), *(_fmt(r[c]) for c in cols), *(_fmt(t.params.get(p)) for p in params)]
        rows.append("<tr>" + "".join(f'<td class="n">{e(c)}</td>' for c in cells) + "</tr>")
    more = f'<p class="note">The last {MAX_TABLE_ROWS} of {len(shown)} finished trials.</p>' if len(shown) > MAX_TABLE_ROWS else ""
    return f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{more}'


def _pareto_table(front: list[dict[str, Any]], names: list[str]) -> str:
    e = html.escape
    head = "".join(f"<th class='n'>{e(c)}</th>" for c in ["trial", *names, "within limits"])
    rows = "".join("<tr>" + "".join(f"<td class='n'>{e(c)}</td>" for c in [str(r.get("number")), *(_fmt(r.get(n)) for n in names),
                                                                            "yes" if r.get("within_limits") else "no"]) + "</tr>" for r in front)
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
