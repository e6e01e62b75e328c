"""Population-based training for boosting: members train in segments of rounds; after each
segment the worst quarter copies a better member's booster (exploit: continue from its `.ubj`
checkpoint on the resident data) and perturbs its learning rate, subsampling and regularisation
(explore). The members' first configurations are a seeded random draw from the space.

Durable state: after every segment the population (parameters, checkpoint, best round, lineage)
is written atomically to `<store>/studies/<study>/pbt-state.json`; a run that dies resumes from
its last completed segment. When the last segment is done every member is added to the study as
a COMPLETE trial (value: its best valid score; `tuneflow:pbt`: its lineage, one entry per
segment: parent, parameters, value, rounds, time), so best_of_study and register work as for a
search, and the lineage is the parameter schedule the registered booster was trained with.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from tasks import objectstore
from tasks.errors import TuneflowError
from tasks.tuning.curves import HISTORY_KEY
from tasks.tuning.loop import StudyOutcome, TrialEvent
from tasks.tuning.records import PBT_ATTR, RESULT_ATTR, json_safe
from tasks.tuning.rungs import Rung, Unit
from tasks.tuning.search_space import suggest

EXPLORE = ("learning_rate", "eta", "subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode", "reg_lambda", "lambda", "reg_alpha", "alpha", "min_child_weight", "gamma")
PERTURB = (0.8, 1.25)
QUANTILE = 0.25
MEMBER_ATTR = "tuneflow:pbt_member"

RunSegment = Callable[[int, dict[str, Any], Unit], Any]  # (member, params, unit) -> future of the trial task's dict


@dataclass
class Member:
    index: int
    params: dict[str, Any]
    distributions: dict[str, Any]  # Optuna distributions of the first draw, as JSON
    checkpoint: str | None = None
    total_rounds: int = 0
    best: tuple[int, float] | None = None
    model_uri: str | None = None
    failed: str | None = None
    continues: int | None = None  # the member whose booster the next segment continues (None: its own)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        return None if self.best is None or self.failed else self.best[1]


def explore(params: dict[str, Any], space: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Perturb the explorable numeric parameters by x0.8 or x1.25, kept inside the space."""
    out = dict(params)
    for name, value in params.items():
        spec = space.get(name)
        if name not in EXPLORE or not isinstance(spec, dict) or spec.get("type") not in ("float", "int"):
            continue
        new = value * rng.choice(PERTURB)
        new = min(max(new, spec["low"]), spec["high"])
        out[name] = int(round(new)) if spec["type"] == "int" else float(new)
    return out


class PopulationTraining:
    """One PBT run over a study: `population` members, `segments` segments of max_rounds / segments rounds."""

    def __init__(
        self,
        study: optuna.Study,
        space: dict[str, Any],
        *,
        population: int,
        segments: int,
        max_rounds: int,
        parallelism: int,
        run_segment: RunSegment,
        checkpoint_path: Callable[[int, int], str],
        state_uri: str,
        storage_options: dict[str, Any],
        seed: int = 0,
        timeout: float | None = None,
        on_event: Callable[[TrialEvent], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if population < 2:
            raise TuneflowError(f"Bad --population {population}.", "use --population 2 or more.")
        self.study, self.space, self.population, self.segments = study, space, population, segments
        self.max_rounds, self.parallelism, self.run_segment = max_rounds, max(1, parallelism), run_segment
        self.checkpoint_path, self.state_uri, self.storage_options = checkpoint_path, state_uri, storage_options
        self.seed, self.timeout, self.on_event, self.log = seed, timeout, on_event, log
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.outcome = StudyOutcome(study.study_name, parallelism=self.parallelism)

    # -- state -----------------------------------------------------------------------------------

    def _initial(self) -> list[Member]:
        draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.seed))
        members = []
        for i in range(self.population):
            trial = draw.ask()
            params = suggest(trial, self.space)
            members.append(Member(i, params, {k: optuna.distributions.distribution_to_json(d) for k, d in trial.distributions.items()}))
        return members

    def _load(self) -> tuple[int, list[Member], bool]:
        fs, path = objectstore.filesystem(self.state_uri, self.storage_options)
        if not fs.exists(path):
            return 0, self._initial(), False
        state = objectstore.read_json(self.state_uri, self.storage_options)
        if state.get("population") != self.population or state.get("segments") != self.segments:
            raise TuneflowError(
                f"Study '{self.study.study_name}' holds a PBT run of {state.get('population')} members x {state.get('segments')} segments.",
                "resume it with the same --population and segments, or pass another --study-name.",
            )
        members = [Member(**{**m, "best": tuple(m["best"]) if m["best"] else None}) for m in state["members"]]
        self.log(f"PBT: resuming after segment {state['done']} of {self.segments}")
        return int(state["done"]), members, bool(state.get("finished"))

    def _save(self, done: int, members: list[Member], finished: bool = False) -> None:
        state = {"population": self.population, "segments": self.segments, "done": done, "finished": finished,
                 "members": [dataclasses.asdict(m) for m in members]}
        objectstore.write_json_atomic(self.state_uri, state, self.storage_options)

    # -- segments --------------------------------------------------------------------------------

    def run(self) -> StudyOutcome:
        started = time.time()
        deadline = started + self.timeout if self.timeout else math.inf
        done, members, finished = self._load()
        seg_rounds = max(1, self.max_rounds // self.segments)
        while not finished and done < self.segments and (done == 0 or time.time() < deadline):
            rounds = self.max_rounds - seg_rounds * (self.segments - 1) if done == self.segments - 1 else seg_rounds
            self._segment(done, rounds, members)
            done += 1
            best = self._ranked(members)[0]  # before exploit: a copy carries its parent's score
            self.log(f"PBT: segment {done}/{self.segments} done, best {best.score} (member {best.index})")
            if done < self.segments:
                self._exploit_and_explore(done, members)
            self._save(done, members)
        self._record(members)
        self._save(done, members, finished=True)
        self.outcome.seconds = time.time() - started
        return self.outcome

    def _segment(self, segment: int, rounds: int, members: list[Member]) -> None:
        """Train every live member `rounds` more rounds, `parallelism` at a time."""
        pending = [m for m in members if not m.failed]
        running: dict[cf.Future, tuple[Member, float, Any]] = {}  # raw future -> (member, submitted, future)
        while pending or running:
            while pending and len(running) < self.parallelism:
                m = pending.pop(0)
                future = self.run_segment(m.index, m.params, self._unit(m, segment, rounds))
                running[getattr(future, "wrapped_future", future)] = (m, time.time(), future)
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for f in finished:
                m, submitted, future = running.pop(f)
                self.outcome.busy_seconds += time.time() - submitted
                try:
                    result = dict(future.result())  # a Prefect future's result is the task's return value
                except Exception as exc:  # the member is lost; the exploit step replaces it
                    m.failed = f"{type(exc).__name__}: {str(exc)[:200]}"
                    m.lineage.append({"segment": segment, "failed": m.failed, "t": time.time()})
                    continue
                m.best = (int(result["best_iteration"]), float(result["value"]))
                m.total_rounds, m.checkpoint, m.model_uri = int(result.get("total_rounds") or 0), result.get("checkpoint_uri"), result.get("model_uri")
                m.info = json_safe({k: v for k, v in result.items() if k not in ("value", HISTORY_KEY)})  # no per-round curve for a member
                m.lineage.append({"segment": segment, "parent": m.index if m.continues is None else m.continues,
                                  "params": dict(m.params), "value": m.best[1], "rounds": m.total_rounds, "resumed": result.get("resumed"), "t": time.time()})
                m.continues = None

    def _unit(self, m: Member, segment: int, rounds: int) -> Unit:
        return Unit(
            rung=Rung(segment, m.total_rounds + rounds, 1.0, segment + 1), num_boost_round=rounds, fraction=1.0,
            resume_from=m.checkpoint, checkpoint_uri=self.checkpoint_path(m.index, segment),
            # Early stopping within the segment only: a member is ranked on what its booster does now
            # (PBT's rule), and an exploited copy must not stop at once on its parent's old best round.
            best_so_far=None, live_key=f"{self.study.study_name}:pbt:{m.index}",
        )

    def _ranked(self, members: list[Member]) -> list[Member]:
        worst = -math.inf if self.maximize else math.inf
        return sorted(members, key=lambda m: m.score if m.score is not None else worst, reverse=self.maximize)

    def _exploit_and_explore(self, done: int, members: list[Member]) -> None:
        """The bottom quantile (and every failed member) copies a top-quantile member and perturbs it."""
        rng = random.Random(f"{self.seed}:{done}")  # the same choices when a resumed run repeats this step
        ranked = self._ranked(members)
        k = max(1, math.floor(len(ranked) * QUANTILE))
        top, bottom = ranked[:k], [m for m in ranked[-k:] if m not in ranked[:k]]
        bottom += [m for m in ranked if m.failed and m not in bottom]
        for m in bottom:
            parent = rng.choice(top)
            if parent.score is None:
                continue
            m.params = explore(parent.params, self.space, rng)
            m.checkpoint, m.total_rounds, m.best, m.failed, m.continues = parent.checkpoint, parent.total_rounds, parent.best, None, parent.index

    # -- the study -------------------------------------------------------------------------------

    def _record(self, members: list[Member]) -> None:
        """Add the members to the study once, as COMPLETE (or FAIL) trials with their lineage."""
        have = {t.user_attrs.get(MEMBER_ATTR) for t in self.study.get_trials(deepcopy=False) if MEMBER_ATTR in t.user_attrs}
        for m in members:
            if m.index in have:
                continue
            dists = {k: optuna.distributions.json_to_distribution(v) for k, v in m.distributions.items()}
            # the parameters its last segment trained with (explore keeps them inside the space)
            params = {k: m.params[k] for k in dists if k in m.params}
            complete = m.score is not None
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, value=m.score if complete else None,
                state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
                user_attrs={MEMBER_ATTR: m.index, PBT_ATTR: m.lineage[-40:], RESULT_ATTR: {**m.info, "model_uri": m.model_uri}},
            ))
            self.outcome.completed += complete
            self.outcome.failed += not complete
        try:
            best = self.study.best_trial
            self.outcome.best_number, self.outcome.best_value = best.number, float(best.value)
        except ValueError:
            pass
        if self.on_event:
            for t in self.study.get_trials(deepcopy=False):
                if t.user_attrs.get(MEMBER_ATTR) is not None and t.user_attrs[MEMBER_ATTR] not in have:
                    self.on_event(TrialEvent(t.number, t.state.name, t.value, t.params, dict(t.user_attrs.get(RESULT_ATTR) or {}),
                                             self.outcome.completed, self.outcome.failed, 0, 0, self.outcome.best_value, self.outcome.best_number))
