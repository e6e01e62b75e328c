"""Checks every run argument before any work starts, and works out what the run will touch."""

from __future__ import annotations

from typing import Any

from tasks import objectstore
from tasks.contracts import RunPlan
from tasks.data import inputs, shard, subset
from tasks.errors import TuneflowError
from tasks.names import check_name
from tasks.problem import check_task, resolve_metric
from tasks.tuning import search_space
from tasks.validation import load_expectations

# The CLI plans before it starts Prefect (bad input fails in a second), then the flow is called
# with the same arguments: it reuses that plan, after checking that the inputs are still the same
# files, instead of reading the sample and the space/expectation files twice.
_last: tuple[tuple[Any, ...], RunPlan] | None = None


def plan_run(
    data: str,
    target: str,
    task: str,
    metric: str | None,
    space: str | None,
    expectations: str | None,
    seed: int,
    row_key: str | None,
    n_trials: int | None,
    timeout: float | None,
    parallelism: int,
    enqueue: str | None = None,
    sample: str | None = None,
    dataset_name: str | None = None,
) -> RunPlan:
    """Cheap checks (arguments, files, header, target column) so bad input fails in seconds.

    `sample` (--sample FRACTION|ROWS) is checked and normalised here; the plan's fingerprint is
    the sample's own dataset version (unchanged when it is None). `dataset_name` names the dataset
    (and so its model and its studies' lineage) instead of the data path's last part."""
    global _last
    key = (data, target, str(task), metric, space, expectations, seed, row_key, n_trials, timeout, parallelism, enqueue, sample, dataset_name)
    if _last is not None and _last[0] == key and inputs.expand_inputs(data, _last[1].data_options) == _last[1].files:
        return _last[1]
    plan = _plan(*key)
    _last = (key, plan)
    return plan


def _plan(
    data: str, target: str, task: str, metric: str | None, space: str | None, expectations: str | None, seed: int,
    row_key: str | None, n_trials: int | None, timeout: float | None, parallelism: int, enqueue: str | None, sample: str | None,
    dataset_name: str | None,
) -> RunPlan:
    check_task(task)
    if dataset_name is not None:
        check_name(dataset_name, "--dataset-name")
    sample = subset.normalise_sample(sample)
    metric, direction = resolve_metric(task, metric)
    if n_trials is None and timeout is None:
        raise TuneflowError("No budget given.", "pass --n-trials N and/or --timeout SECONDS.")
    if (n_trials is not None and n_trials < 1) or (timeout is not None and not timeout > 0) or parallelism < 1:  # not > 0: NaN too
        raise TuneflowError(
            f"Bad budget: n_trials={n_trials}, timeout={timeout}, parallelism={parallelism}.",
            "use --n-trials >= 1, --timeout > 0 and --parallelism >= 1.",
        )
    if not 0 <= seed < 2**31:  # Optuna's samplers take 0 .. 2**32 - 1, and a resumed study's is seeded past its trials
        raise TuneflowError(f"Bad --seed {seed}.", "use a whole number from 0 to 2147483647.")
    for path, option in ((space, "--space"), (enqueue, "--enqueue"), (expectations, "--expectations")):
        objectstore.check_text_file(path, option)  # reachable (not 'does not exist') and UTF-8 (with the iconv line), before the loaders
    space_def = search_space.load_space(space)
    configs = search_space.load_configs(enqueue, space_def)  # names and values checked against the space
    user_expectations = load_expectations(expectations)
    data_options = objectstore.storage_options_for(data)
    files = inputs.expand_inputs(data, data_options)
    schema = inputs.infer_schema(files, target, task, data_options, declared=user_expectations.get("columns"))
    if task == "regression" and schema["columns"][target]["kind"] != "numeric":
        raise TuneflowError(
            f"Target '{target}' is not numeric, so it cannot be a regression target.",
            "pick a numeric target, or use --task binary/multiclass for a label column.",
        )
    if row_key is not None and row_key not in schema["columns"]:
        raise TuneflowError(f"Row key column '{row_key}' is not in the data.", "pass --row-key with an existing column, or leave it out.")
    if row_key == target:
        raise TuneflowError("The row key cannot be the target.", "pass an identifier column as --row-key.")
    fp = shard.fingerprint(files, schema, seed=seed, fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, sample=sample)
    return RunPlan(
        data, target, task, metric, direction, space_def, user_expectations, files, schema, dataset_name or shard.dataset_name(data), fp, data_options, configs,
        sample=sample,
    )
