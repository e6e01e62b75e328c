"""Which Optuna sampler a study uses: the one asked for, or `auto`'s pick, with the reason.

`auto` follows Optuna's own guidance (its samplers table and OptunaHub's AutoSampler):
- categorical or conditional parameters: TPE (multivariate; `group=True` on a conditional space);
- an all-numeric space and at most 250 trials: GP, the sample-efficient choice for small budgets
  (it needs torch: `pip install 'tuneflow[gp]'`; without it TPE, and the log says so);
- an all-numeric space and more than 1000 trials: CMA-ES (single objective);
- several objectives: GP up to 250 trials on a numeric space, TPE up to 1000, NSGA-II beyond;
- otherwise (250-1000 trials, or a timeout without a trial count): TPE.
`auto` never picks grid search: it is for a space the user wants covered exhaustively.

A sampler named explicitly is honoured or refused with one clear error, never silently replaced:
whoever names a sampler is comparing samplers, and a quiet fallback would spoil the comparison.
Refused: grid on a conditional space or a continuous parameter; CMA-ES on categorical or
conditional parameters or several objectives (Optuna would sample those at random); GP or QMC
on a conditional space; GP without torch.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import warnings

import optuna

from tasks.contracts import Sampler
from tasks.errors import TuneflowError
from tasks.tuning.search_space import SearchSpace

# group=, QMC, GP and CMA-ES options are "experimental" in Optuna 5.0: one warning per run is noise to users
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

GP_MAX_TRIALS = 250
TPE_MAX_TRIALS = 1000
TPE_STARTUP_TRIALS = 8


@dataclass(frozen=True)
class SamplerChoice:
    """The sampler a study will use and why (logged and kept in the run's report)."""

    name: Sampler
    reason: str
    grid_size: int | None = None  # grid search: the number of configurations


def gp_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _member(value: str) -> Sampler:
    try:
        return Sampler(value)
    except ValueError:
        raise TuneflowError(f"Bad --sampler {value!r}.", f"use --sampler {'|'.join(m.value for m in Sampler)}.") from None


def choose_sampler(requested: str, space: SearchSpace, n_trials: int | None, n_objectives: int = 1) -> SamplerChoice:
    """Check an explicit sampler against the space, or pick one for `auto`."""
    name = _member(requested)
    if name == Sampler.AUTO:
        return _auto(space, n_trials, n_objectives)
    _refuse_unfit(name, space, n_objectives)
    if name == Sampler.GRID:
        size = math.prod(len(v) for v in space.grid().values())
        return SamplerChoice(name, f"asked for; {size} configurations, the run ends when all are tried", size)
    return SamplerChoice(name, "asked for")


def _auto(space: SearchSpace, n_trials: int | None, n_objectives: int) -> SamplerChoice:
    budget = "a timeout" if n_trials is None else f"{n_trials} trials"
    if space.conditional or space.categorical:
        what = "conditional" if space.conditional else f"categorical ({', '.join(space.categorical)})"
        return SamplerChoice(Sampler.TPE, f"auto: the space has {what} parameters, which TPE models")
    small = n_trials is not None and n_trials <= GP_MAX_TRIALS
    if small and n_objectives <= 3:
        if gp_available():
            return SamplerChoice(Sampler.GP, f"auto: an all-numeric space and {budget} (<= {GP_MAX_TRIALS}): GP is the most sample-efficient")
        return SamplerChoice(Sampler.TPE, f"auto: GP would suit an all-numeric space and {budget}, but torch is not installed (pip install 'tuneflow[gp]'): TPE")
    large = n_trials is not None and n_trials > TPE_MAX_TRIALS
    if large and n_objectives > 1:
        return SamplerChoice(Sampler.NSGA2, f"auto: {n_objectives} objectives and {budget} (> {TPE_MAX_TRIALS}): NSGA-II")
    if large and len(space.tunable) > 1:
        return SamplerChoice(Sampler.CMAES, f"auto: an all-numeric space and {budget} (> {TPE_MAX_TRIALS}): CMA-ES")
    return SamplerChoice(Sampler.TPE, f"auto: {budget}: multivariate TPE, Optuna's default for budgets of hundreds of trials")


def _refuse_unfit(name: Sampler, space: SearchSpace, n_objectives: int) -> None:
    conditional = {Sampler.GRID: "grid search", Sampler.CMAES: "CMA-ES", Sampler.GP: "GP", Sampler.QMC: "QMC"}
    if space.conditional and name in conditional:
        raise TuneflowError(
            f"--sampler {name} cannot serve a conditional space: {conditional[name]} samples one fixed set of parameters.",
            "use --sampler tpe (or auto, random, nsga2), or remove the conditions.",
        )
    if name == Sampler.CMAES and space.categorical:
        raise TuneflowError(
            f"--sampler cmaes cannot model categorical parameters ({', '.join(space.categorical)}): Optuna would sample them at random.",
            "fix them to one value in the --space file, or use --sampler tpe (or auto).",
        )
    if name == Sampler.CMAES and n_objectives > 1:
        raise TuneflowError("--sampler cmaes optimises one objective.", "use --sampler nsga2, tpe or auto with --objectives.")
    if name == Sampler.GP and not gp_available():
        raise TuneflowError("--sampler gp needs torch, which is not installed.", "pip install 'tuneflow[gp]', or use --sampler tpe (or auto).")
    if name == Sampler.GRID:
        space.grid()  # raises, naming the first continuous parameter


class _AskTellGrid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` (which only works inside `optimize`):
    the tuning loop asks `is_exhausted` instead."""

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001 (Optuna's signature)
        pass


def build_sampler(choice: SamplerChoice, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for `choice`, seeded."""
    name = choice.name
    if name == Sampler.TPE:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True, group=space.conditional)
    if name == Sampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    if name == Sampler.GRID:
        return _AskTellGrid(space.grid(), seed=seed)
    if name == Sampler.QMC:
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False)
    if name == Sampler.GP:
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
    if name == Sampler.CMAES:
        return optuna.samplers.CmaEsSampler(seed=seed, consider_pruned_trials=True)
    if name == Sampler.NSGA2:
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise AssertionError(name)  # AUTO is resolved by choose_sampler


def exhausted(sampler: optuna.samplers.BaseSampler, study: optuna.Study) -> bool:
    """Grid search: every configuration has been asked."""
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)

