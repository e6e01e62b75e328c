"""Typed records that cross a process or step boundary, and the one home of tuneflow's defaults.

Imports only the standard library: a Dask worker (or the GPU machine, which has no Prefect,
Optuna, Great Expectations, MLflow or pydantic) loads this module to read a trial request.

- `DatasetManifest`: what the shard step writes as `_manifest.json` and every later step reads.
- `TrialRequest` / `TrialResult`: what the flow sends to a worker and what comes back.
- `RunPlan`: the checked arguments of a run (the plan step's output).
- `RunResult` / `RegisteredModel`: what the flow returns (a plain dict, JSON as it is).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

# Defaults: the CLI, the flow, the engine and the benchmarks all read them from here.
DEFAULT_MAX_ROUNDS = 500
DEFAULT_EARLY_STOPPING_ROUNDS = 30
DEFAULT_MAX_BIN = 256
DEFAULT_PARALLELISM = 2
DEFAULT_N_TRIALS = 20
COLLECTIVE_TIMEOUT_S = 300  # data-parallel: a lost peer fails the trial after this long, not never
LABEL_COLUMN = "__label__"  # the encoded target inside every shard
REDUCTION_FACTOR = 3  # eta: rungs of successive halving / Hyperband, data fractions 1/9, 1/3, 1
DEFAULT_POPULATION = 8
DEFAULT_PBT_SEGMENTS = 5  # PBT: max_rounds trained in this many segments, exploit/explore between


class Placement(enum.StrEnum):
    AUTO = "auto"
    TRIAL = "trial"  # trial-parallel: each worker holds the data and runs whole trials
    DATA = "data"  # data-parallel: every trial spans all workers (xgboost.dask)


class Device(enum.StrEnum):
    AUTO = "auto"  # CUDA on a worker that has a GPU and a CUDA build of XGBoost, else CPU
    CPU = "cpu"
    CUDA = "cuda"


class Pruner(enum.StrEnum):
    NONE = "none"  # every trial trains to the end (early stopping only)
    MEDIAN = "median"
    PERCENTILE = "percentile"
    SHA = "sha"  # asynchronous successive halving (ASHA)
    HYPERBAND = "hyperband"


class Fidelity(enum.StrEnum):
    ROUNDS = "rounds"  # rungs over boosting rounds, continued from the live booster
    DATA = "data"  # rungs over nested fractions of the train rows (1/9, 1/3, 1), each trained afresh
    BOTH = "both"  # rung k: fraction eta^-(K-1-k) of the rows and of max_rounds


class Strategy(enum.StrEnum):
    SEARCH = "search"  # a sampler proposes configurations, a pruner stops bad ones
    PBT = "pbt"  # population-based training: exploit a better member's booster, explore its parameters


class Schedule(enum.StrEnum):
    ASYNC = "async"  # a new trial starts as soon as a slot is free
    SYNC = "sync"  # batches of `parallelism` trials: the next batch starts when the whole batch is done


class Sampler(enum.StrEnum):
    AUTO = "auto"  # picked from the space, the budget and the objectives (tasks/tuning/samplers.py)
    TPE = "tpe"  # multivariate TPE (group=True on a conditional space)
    RANDOM = "random"
    GRID = "grid"
    QMC = "qmc"
    GP = "gp"  # needs torch: pip install 'tuneflow[gp]'
    CMAES = "cmaes"
    NSGA2 = "nsga2"


class WarmStart(enum.StrEnum):
    AUTO = "auto"  # seed a new study from the latest earlier study of the same dataset, task, metric and space
    OFF = "off"


DEFAULT_PRUNER = Pruner.SHA
DEFAULT_FIDELITY = Fidelity.ROUNDS
DEFAULT_SAMPLER = Sampler.AUTO


class Task(enum.StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class FeatureSpec(TypedDict):
    name: str
    kind: str  # "numeric" | "categorical"
    categories: NotRequired[list[str]]  # categorical only: the code of a value is its index here
    missing_values: NotRequired[list[str]]  # declared in the expectations file: read as missing (text or number)


class ShardFile(TypedDict):
    path: str  # relative to the manifest's uri
    rows: int
    bytes: int
    sha256: str


class SplitFiles(TypedDict):
    rows: int
    bytes: int
    files: list[ShardFile]


class DatasetManifest(TypedDict):
    """`_manifest.json`: a dataset version exists only once this is written."""

    format: str
    name: str
    fingerprint: str
    uri: str
    created_at: str
    target: str
    task: str
    features: list[FeatureSpec]
    classes: list[str] | None  # label values in code order; None for regression
    row_key: str | None
    split: dict[str, Any]
    splits: dict[str, SplitFiles]  # "train" | "valid" | "test"
    sample: NotRequired[dict[str, Any] | None]  # --sample: spec, fraction, of_rows, rows, all_rows (tasks/data/subset.py); None/absent: all rows
    total_rows: int
    total_bytes: int
    sources: list[dict[str, Any]]
    shard_code_version: str
    shard_seconds: float


@dataclass(frozen=True)
class TrialRequest:
    """One unit of training sent to a worker: a configuration on a dataset version.

    A unit trains `num_boost_round` more rounds. It continues a booster when one is given: the
    live one the worker kept under `live_key` if that is the booster saved at `resume_from`, else
    the one saved at `resume_from` (a `.ubj` URI in the store) or `init_model` (`.ubj` bytes).
    `checkpoint_uri` asks for the whole booster back (for the next unit) and names where the flow
    keeps it. `best_so_far` (round, value) carries early stopping across units. `fraction` trains
    on that nested, deterministic share of the train rows. `noop_value` skips training and returns
    that value (orchestration benchmarks).
    """

    manifest: DatasetManifest
    params: dict[str, Any]  # XGBoost parameters: the problem's fixed ones plus the sampled ones
    storage_options: dict[str, Any] = field(default_factory=dict)
    number: int = 0
    placement: Placement = Placement.TRIAL
    device: Device = Device.AUTO
    nthread: int | None = None  # None: cores per concurrent trial on the worker
    num_boost_round: int = DEFAULT_MAX_ROUNDS
    early_stopping_rounds: int | None = DEFAULT_EARLY_STOPPING_ROUNDS
    collective_timeout_s: int = COLLECTIVE_TIMEOUT_S
    init_model: bytes | None = None
    noop_value: float | None = None
    fraction: float = 1.0
    resume_from: str | None = None
    live_key: str | None = None
    checkpoint_uri: str | None = None
    best_so_far: tuple[int, float] | None = None
    measure_latency: bool = False  # time a prediction of the valid split (a latency objective)

    @property
    def max_bin(self) -> int:
        return int(self.params.get("max_bin", DEFAULT_MAX_BIN))

    def for_trial(self, number: int, sampled: dict[str, Any]) -> TrialRequest:
        """This request for one trial: the sampled parameters over the fixed ones."""
        return dataclasses.replace(self, number=number, params={**self.params, **sampled})


@dataclass(frozen=True)
class TrialResult:
    """What a worker returns: the score, the model (UBJSON bytes) and where the time went.

    `value`/`best_iteration` are the best over every round the booster has (this unit's and the
    ones it continued); `model_ubj` is the booster cut at that round; `checkpoint_ubj` the whole
    booster, when the request asked for it.
    """

    value: float
    best_iteration: int
    rounds: int  # rounds trained in this unit
    model_ubj: bytes
    device: str
    placement: str
    history: tuple[float, ...] = ()  # the valid metric after every round trained in this unit
    total_rounds: int = 0  # rounds in the booster after this unit
    stopped_early: bool = False  # early stopping ended this unit before num_boost_round
    resumed: str = "scratch"  # scratch | live | checkpoint: where this unit's booster came from
    fraction: float = 1.0
    checkpoint_ubj: bytes | None = None
    data_cache_hit: bool | None = None
    matrix_cache_hit: bool | None = None
    load_seconds: float = 0.0
    setup_seconds: float = 0.0
    train_seconds: float = 0.0
    seconds: float = 0.0
    pid: int | None = None
    noop: bool = False
    cores: int = 1  # CPU threads the unit held (all workers' in data-parallel placement)
    gpus: int = 0
    cpu_seconds: float = 0.0  # the worker's CPU time during the unit (all workers' in data-parallel placement)
    peak_rss_mb: float = 0.0  # the worker's peak resident memory during the unit (largest worker's)
    gpu_util_pct: float | None = None  # CUDA: mean GPU utilisation during the unit (NVML)
    gpu_mem_peak_mb: float | None = None  # CUDA: peak GPU memory in use during the unit (NVML)
    model_bytes: int = 0  # size of model_ubj
    predict_ms_per_1k: float | None = None  # when the request asked: milliseconds to predict 1,000 valid rows

    def summary(self) -> dict[str, Any]:
        """JSON-safe fields worth keeping with the trial (no model bytes, no per-round history)."""
        skip = {"model_ubj", "checkpoint_ubj", "history", "value"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


def trial_request(manifest: DatasetManifest, params: dict[str, Any] | None = None, **options: Any) -> TrialRequest:
    """The one way tests, benchmarks and the flow build a request (options: TrialRequest's fields)."""
    return TrialRequest(manifest=manifest, params=dict(params or {}), **options)


@dataclass(frozen=True)
class RunPlan:
    """A run's arguments, checked before any work starts, and the inputs it will read."""

    data: str
    target: str
    task: str
    metric: str
    direction: str
    space: Any  # a tasks.tuning.search_space.SearchSpace: not imported, this module stays standard-library only
    expectations: dict[str, Any]
    files: list[dict[str, Any]]
    schema: dict[str, Any]
    name: str
    fingerprint: str
    data_options: dict[str, Any]
    enqueue: list[dict[str, Any]]
    sample: str | None = None  # --sample, normalised ("10%" -> "0.1"; a row count "50000"); part of the fingerprint


class RegisteredModel(TypedDict):
    model_name: str
    version: int
    alias: str  # "champion" | "challenger"
    run_id: str
    model_uri: str
    test_value: float
    previous_champion_version: int | None
    previous_champion_test_value: float | None
    reused: bool


class RunResult(TypedDict):
    """What the flow returns and writes to `<store>/reports/<study>.json`."""

    dataset: str
    fingerprint: str
    manifest_uri: str
    rows: dict[str, int]
    study_name: str
    storage: str
    metric: str
    direction: str
    trials_this_run: int
    failed_this_run: int
    pruned_this_run: int
    strategy: str
    pruner: str
    fidelity: str
    schedule: str
    sampler: str
    sampler_reason: str
    objectives: list[str]  # the metric, then any costs (multi-objective)
    pareto_front: list[dict[str, Any]]  # multi-objective: the Pareto-optimal trials, best metric first
    stopped_by: str  # which rule ended the tuning
    cost_hours: float  # core-hours (GPU-hours on CUDA) the trials of this run held
    cpu_hours: float  # CPU time measured on the workers over this run's trials
    gpu_hours: float  # wall time of this run's units on CUDA
    warm_start: dict[str, Any] | None  # {"from": study, "mode": copied|enqueued, "trials": n}
    sample: str | None  # --sample of a smoke run
    slot_utilisation: float | None  # share of the trial slots' time that units were in flight
    recovered_trials: list[int]
    placement: str
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    registered: RegisteredModel
    tune_seconds: float
    report_uri: str
    report_html_uri: str | None  # <store>/reports/<study>.html, the study report (None when it could not be drawn)
