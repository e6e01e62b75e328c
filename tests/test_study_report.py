"""The study report and the learning curves, on a small real study (real XGBoost trials, rungs
and a pruner through the tuning loop): curves kept per trial, the HTML page (drawn in
headless Chromium: it renders, a screenshot is taken, no console errors), the curves as MLflow
step metrics, and TensorBoard event files read back."""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import shutil
import socketserver
import struct
import subprocess
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tasks import objectstore
from tasks.contracts import Fidelity, Pruner
from tasks.reporting import exports
from tasks.reporting.study_report import render_study_report
from tasks.tuning.curves import CURVE_ATTR, compact_curve, curve_points, top_trials
from tasks.tuning.records import RESULT_ATTR
from tests.conftest import make_csv, shard_csv

CHROMIUM = "/usr/bin/chromium"
MAX_ROUNDS = 60


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    """12 trials of real XGBoost on churn data, rungs of 20/60 rounds under the median pruner (4 start-up trials)."""
    from tasks.tuning.loop import run_study
    from tasks.tuning.rungs import RungScheduler, ladder, make_pruner
    from tests.units import SPACE, LocalUnits, template

    root = tmp_path_factory.mktemp("report")
    manifest = shard_csv(make_csv(root / "churn.csv", 3000), "churned", "binary", {"categories": {}, "classes": {"0": 1, "1": 1}}, str(root / "store"), row_key="customer_id")
    rungs = ladder(Fidelity.ROUNDS, Pruner.SHA, MAX_ROUNDS)
    the_study = optuna.create_study(study_name="report-study", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=2),
                                    pruner=make_pruner(Pruner.MEDIAN, rungs))
    the_study.set_user_attr("tuneflow:identity", {"dataset": "churn", "fingerprint": manifest["fingerprint"], "metric": "auc", "objectives": "auc"})
    local = LocalUnits(template(manifest, MAX_ROUNDS, early_stopping_rounds=15), str(root / "store"), root / "units.jsonl")
    scheduler = RungScheduler(the_study, rungs, local.run_unit, lambda n, r: str(root / "store" / "ckpt" / f"{n}-{r}.ubj"))
    run_study(the_study, SPACE, n_trials=12, timeout=None, parallelism=2, submit=lambda n, p: None, start=scheduler.start, advance=scheduler.advance)
    return the_study


def result_for(study: optuna.Study) -> dict:
    best = study.best_trial
    return {
        "dataset": "churn", "study_name": study.study_name, "metric": "auc", "direction": "maximize", "sampler": "random", "sampler_reason": "named",
        "objectives": ["auc"], "best_trial": best.number, "best_value": best.value, "stopped_by": "n-trials", "cost_hours": 0.001, "cpu_hours": 0.0005,
        "gpu_hours": 0.0, "rows": {"train": 2400, "valid": 300, "test": 300},
        "registered": {"model_name": "tuneflow-churn", "version": 3, "alias": "champion", "test_value": 0.81, "run_id": "r"},
    }


def test_every_finished_trial_keeps_its_curve_over_its_rungs(study: optuna.Study) -> None:
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 12 and sum(t.state == TrialState.COMPLETE for t in finished) >= 4
    for t in finished:
        result = t.user_attrs[RESULT_ATTR]
        assert "history" not in result and "history_start" not in result  # the curve is an attribute of its own
        points = curve_points(t)
        assert [s for s, _ in points] == list(range(result["total_rounds"]))  # every round, across the rungs, from round 0
        if t.state == TrialState.COMPLETE:
            assert max(v for _, v in points) == pytest.approx(t.value, abs=1e-6)  # the value is the best round's
        for step, reported in t.intermediate_values.items():  # what each rung reported is on the curve
            assert max(v for s, v in points if s < step) == pytest.approx(reported, abs=1e-6)  # a rung of `step` rounds
    assert any(t.user_attrs[RESULT_ATTR]["rungs"] == 2 and t.user_attrs[RESULT_ATTR]["rung"] == 1 for t in finished)  # a curve over two units


def test_compact_curve_subsamples_and_keeps_the_last_round() -> None:
    values = [1 - 1 / (i + 2) for i in range(1234)]
    curve = compact_curve(values, start=0, max_points=500)
    assert len(curve["values"]) <= 500 and curve["every"] == 3 and curve["rounds"] == 1234
    t = optuna.trial.create_trial(value=values[-1], params={}, distributions={}, user_attrs={CURVE_ATTR: curve})
    points = curve_points(t)
    assert points[0] == (0, pytest.approx(values[0])) and points[-1] == (1233, pytest.approx(values[-1]))
    assert all(v == pytest.approx(values[s], rel=1e-6) for s, v in points)
    assert compact_curve([0.5, float("nan")], start=10)["values"] == [0.5, None] and compact_curve([], 0) is None


def test_curve_builder_joins_continued_units_and_restarts_on_fresh_ones() -> None:
    from tasks.tuning.curves import CurveBuilder, pop_curve

    rounds = CurveBuilder()  # rounds fidelity: rung 2 continues rung 1's booster (live)
    first = {"history": [0.6, 0.7], "total_rounds": 2, "resumed": "scratch"}
    rounds.add(first)
    second = {"history": [0.72, 0.71, 0.73], "total_rounds": 5, "resumed": "live"}
    rounds.add(second)
    assert pop_curve(second) == {"start": 0, "every": 1, "values": [0.6, 0.7, 0.72, 0.71, 0.73], "rounds": 5} and "history" not in second
    data = CurveBuilder()  # data fidelity: every rung trains afresh on more rows; the curve is the last one's
    for history in ([0.5, 0.55], [0.6, 0.62, 0.64]):
        unit = {"history": history, "total_rounds": len(history), "resumed": "scratch"}
        data.add(unit)
    assert pop_curve(unit)["values"] == [0.6, 0.62, 0.64]
    resumed = CurveBuilder()  # a lost trial's copy resumes from rung 1's checkpoint: its curve starts there
    unit = {"history": [0.7, 0.71], "total_rounds": 22, "resumed": "checkpoint"}
    resumed.add(unit)
    assert pop_curve(unit) == {"start": 20, "every": 1, "values": [0.7, 0.71], "rounds": 22}
    assert pop_curve({"history": [0.1, 0.2], "total_rounds": 2}) == {"start": 0, "every": 1, "values": [0.1, 0.2], "rounds": 2}  # no rungs


def test_html_report_is_self_contained_with_every_section(study: optuna.Study) -> None:
    page = render_study_report(study, result_for(study))
    assert page.count("plotly.js v") == 1 or page.count("* plotly.js") == 1  # plotly.js inline, once
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)  # nothing fetched (no CDN): opens offline
    for anchor in ("best-so-far", "learning-curves", "rungs", "parallel-coordinates", "importances", "resources", "trials"):
        assert f'<section id="{anchor}">' in page, anchor
    assert "Not drawn" not in page  # 12 trials, 3+ complete: fANOVA and parallel coordinates both draw
    assert "tuneflow-churn version 3 (alias champion)" in page and "report-study" in page and "random (named)" in page


def test_report_degrades_on_a_tiny_study_and_shows_a_pareto_front() -> None:
    one = optuna.create_study(direction="minimize")
    one.add_trial(optuna.trial.create_trial(value=0.3, params={"x": 1.0}, distributions={"x": optuna.distributions.FloatDistribution(0, 2)}))
    page = render_study_report(one)
    assert "Not drawn" in page and page.count("* plotly.js") <= 1  # importances need two trials: a note, not a failure
    multi = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(6):
        x = i / 5
        multi.add_trial(optuna.trial.create_trial(values=[x, x * x + 0.1 * (i % 2)], params={"x": x}, distributions=dist))
    front = [{"number": 0, "auc": 0.0, "size_mb": 0.0, "within_limits": True}]
    page = render_study_report(multi, {"metric": "auc", "objectives": ["auc", "size_mb"], "pareto_front": front, "direction": "maximize"})
    assert '<section id="pareto">' in page and '<section id="pareto-table">' in page


def test_curves_logged_to_mlflow_as_step_metrics_once(study: optuna.Study, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tasks.register import ensure_sqlite_tracking_db

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_sqlite_tracking_db(uri)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri()))
    page = "<html><body>report</body></html>"
    logged = exports.log_to_mlflow(uri, run.info.run_id, page, study, "auc", top_k=2, include=study.best_trial.number)
    best = top_trials(study, 2)
    assert list(logged) == [exports.curve_key(t.number, "auc") for t in best]
    for t in best:
        history = client.get_metric_history(run.info.run_id, exports.curve_key(t.number, "auc"))
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(s, pytest.approx(v)) for s, v in curve_points(t)]
    assert exports.log_to_mlflow(uri, run.info.run_id, page, study, "auc", top_k=2) == {}  # a reused registration: no duplicates
    local = client.download_artifacts(run.info.run_id, exports.REPORT_ARTIFACT, str(tmp_path / "dl"))
    assert Path(local).read_text() == page


def read_scalars(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """Scalars (tag -> [(step, value)]) and plugin names in a folder's event files (TFRecord of Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    plugins: list[str] = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            record = data[pos + 12: pos + 12 + length]  # length, its masked CRC (4), the record, its CRC (4)
            pos += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name:
                    plugins.append(v.metadata.plugin_data.plugin_name)
                if v.HasField("simple_value"):
                    scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars, plugins


def test_tensorboard_event_files_hold_the_curves_and_hparams(study: optuna.Study, tmp_path: Path) -> None:
    folders = exports.write_tensorboard(study, tmp_path / "tb", top_k=3)
    best = top_trials(study, 3)
    assert [f.name for f in folders] == [f"trial-{t.number:05d}" for t in best]
    for folder, t in zip(folders, best):
        scalars, plugins = read_scalars(folder)
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in scalars["valid/auc"]] == curve_points(t)
        assert scalars["hparam/auc"] == [(0, pytest.approx(t.value, rel=1e-6))] and "hparams" in plugins


def test_cli_report_and_tensorboard_commands(study: optuna.Study, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    journal = tmp_path / "study.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=storage)
    runner = CliRunner()
    done = runner.invoke(app, ["tensorboard", "--study", study.study_name, "--storage", str(journal), "--out", str(tmp_path / "tb"), "--top", "2"])
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "tb").glob("trial-*/events.out.tfevents.*"))) == 2 and "tensorboard --logdir" in done.output
    done = runner.invoke(app, ["report", "--study", study.study_name, "--storage", str(journal), "--store", str(tmp_path / "store")])
    assert done.exit_code == 0, done.output
    assert '<section id="learning-curves">' in (tmp_path / "store" / "reports" / f"{study.study_name}.html").read_text()
    missing = runner.invoke(app, ["tensorboard", "--study", "nope", "--storage", str(journal), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "No study named 'nope'" in missing.output


# -- the page in a browser -------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(study: optuna.Study, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "report.html").write_text(render_study_report(study, result_for(study)), encoding="utf-8")
    # a control page: proves that console output would show in the log this test reads
    (site / "control.html").write_text('<html><body><script>console.error("control-error"); nope();</script></body></html>', encoding="utf-8")
    handler = functools.partial(_Quiet, directory=str(site))
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/report.html"
        shot = tmp_path / "report.png"
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
                 "--window-size=1280,4200", "--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw"]
        shot_run = subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=180)
        dom_run = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        control = subprocess.run([*flags, "--dump-dom", url.replace("report.html", "control.html")], capture_output=True, text=True, timeout=180)
        server.shutdown()
    if os.environ.get("TUNEFLOW_KEEP_SCREENSHOT"):  # for a person to look at
        shutil.copy(shot, os.environ["TUNEFLOW_KEEP_SCREENSHOT"])
    assert shot_run.returncode == 0 and dom_run.returncode == 0, shot_run.stderr[-3000:] + dom_run.stderr[-3000:]
    logs = shot_run.stderr + dom_run.stderr
    console = [line for line in logs.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    assert "control-error" in control.stderr and "Uncaught ReferenceError" in control.stderr, control.stderr[-2000:]

    from PIL import Image, ImageStat

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4200) and shot.stat().st_size > 50_000
    stat = ImageStat.Stat(image)
    assert max(stat.stddev) > 20  # not a blank page
    colours = image.resize((320, 1050)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 200  # lines, markers and text, not a flat card

    dom = dom_run.stdout
    figures = re.findall(r'<div id="fig-[^"]+" class="plotly-graph-div', dom)
    assert len(figures) >= 6, len(figures)  # best so far, curves, rungs, parallel coordinates, importances, resources
    assert dom.count('class="plot-container plotly"') >= len(figures)  # each one drawn by plotly.js after the scripts ran
    assert dom.count('<svg class="main-svg"') >= len(figures) and 'class="gl-container"' in dom  # parallel coordinates draw with WebGL
