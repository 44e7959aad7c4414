"""What a search is made of, as Ray Tune and Optuna take it: the space, the searcher, the scheduler.

The space's define-by-run function wrapped for Tune (:class:`TrialSpace`, with the run settings every
trial shares), the Optuna sampler behind Ray's ``OptunaSearch`` (:func:`make_searcher`; in a search,
paced to a share of the wall time: :class:`PacedSampler`), the early stopping (:func:`make_scheduler`)
and the configurations tried first (:func:`starting_points`). Used by a search (:mod:`tuner.driver`)
and by the benchmarks that replay one (``bench/strategies.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler

from tuner.objectives import modes_of

if TYPE_CHECKING:
    from search_spaces import Space, Trial
    from tuner.experiment import Experiment

WARM_START_TOP = 3  # configurations taken from an earlier run by --warm-start


@dataclass(frozen=True)
class TrialSpace:
    """The space's define-by-run function plus the constants every trial needs.

    A class rather than a closure so the searcher (which holds it) can be saved and restored with
    the experiment. It only calls ``trial.suggest_*`` (through the space) and returns constants;
    ``params`` records the suggested values so any trial can be retrained with ``--params``.
    """

    space: str
    size: str
    image_size: int
    constants: dict = field(default_factory=dict)

    def __call__(self, trial: Trial) -> dict:
        from search_spaces import define_by_run

        config = define_by_run(self.space, size=self.size, image_size=self.image_size)(trial)
        return {**config, **self.constants, "params": dict(trial.params)}


def trial_constants(exp: Experiment, image_size: int) -> dict:
    """The run settings every trial of ``exp`` shares (see :func:`trainables.settings.run_settings`)."""
    from trainables.settings import run_settings

    return run_settings(space=exp.space, size=exp.size, image_size=image_size, epochs=exp.max_epochs,
                        seed=exp.seed, data=exp.data, threads=max(1, int(exp.cpus_per_trial)),
                        workers_per_trial=exp.workers_per_trial, cpus_per_worker=exp.cpus_per_trial,
                        gpus_per_worker=exp.gpus_per_trial, plugins=exp.plugins, init_from=exp.init_from)


def make_searcher(exp: Experiment, space: Space, image_size: int, points: list[dict], paced: bool = False) -> Any:
    """OptunaSearch over the space with the experiment's sampler (``exp.searcher``).

    ``paced``: the sampler's model may take no more than a share of the wall time (:class:`PacedSampler`),
    as in a search; replays of searches in simulated time (``bench/strategies.py``) leave it unpaced.

    ``tpe``: TPE with ``multivariate`` and ``group`` (the conditional parameters modelled jointly) and
    ``constant_liar`` (concurrent trials are not all proposed at the same spot). ``gp``: Optuna's
    Gaussian-process sampler, which its guide recommends for small budgets. ``random``: the baseline.
    ``centred``: draws around the space's default point (piBO's prior); in the strategy replay
    (``bench/strategies.py``) it finds better configurations where the default is weak and they lie near it,
    and rarely where the default is already good.
    The model-based ones start with the same random start-up trials. GP learns only from trials that
    ran the whole budget (it ignores pruned ones), which the ``reliable`` scheduler's unstopped bracket
    supplies. Returns a :class:`~tuner.asha_optuna.AshaAwareOptunaSearch`.

    With several objectives (``exp.objectives``: the task metric, then cost measures) the sampler is
    TPE (random stays random; ``gp`` is refused when such a search is planned,
    :func:`~tuner.experiment.check_strategy`, and runs saved before that get TPE), as Optuna's
    multi-objective TPE (MOTPE: good and bad trials split by non-domination rank, ties by
    hypervolume), with the same start-up trials and constant liar. NSGA-II, Optuna's other
    multi-objective sampler, is not used: its first generation is ``population_size`` (default 50)
    trials drawn at random, so a 20- or 40-trial search would never leave it.
    """
    from tuner.asha_optuna import AshaAwareOptunaSearch

    multi = len(exp.objectives) > 1  # Ray's OptunaSearch takes a list of metrics and modes for several
    return AshaAwareOptunaSearch(
        space=TrialSpace(exp.space, exp.size, image_size, trial_constants(exp, image_size)),
        metric=list(exp.objectives) if multi else space.metric,
        mode=list(modes_of(exp.objectives, space)) if multi else space.mode,
        sampler=make_sampler(exp, paced, image_size), points_to_evaluate=points or None, max_epochs=exp.max_epochs)


def make_sampler(exp: Experiment, paced: bool = False, image_size: int = 64) -> Any:
    """The Optuna sampler ``exp.searcher`` names, seeded by ``exp.seed``; a model-based one ``paced`` if asked.

    ``centred`` draws around the space's default point at ``image_size`` (:class:`~tuner.samplers.CentredSampler`
    at :data:`~tuner.samplers.CENTRED_RADIUS`): no model, so nothing to pace.
    """
    import optuna

    startup = max(exp.concurrency, min(10, exp.num_samples // 3))
    if exp.searcher == "random":
        return optuna.samplers.RandomSampler(seed=exp.seed)
    if exp.searcher == "centred":
        from search_spaces import default_params
        from tuner.samplers import CENTRED_RADIUS, CentredSampler

        return CentredSampler(default_params(exp.space, exp.size, image_size), CENTRED_RADIUS, seed=exp.seed)
    if exp.searcher == "gp" and len(exp.objectives) == 1:
        model = optuna.samplers.GPSampler(seed=exp.seed, n_startup_trials=startup)
    else:
        model = optuna.samplers.TPESampler(seed=exp.seed, multivariate=True, group=True, constant_liar=True,
                                           n_startup_trials=startup)
    return PacedSampler(model, name=exp.searcher.upper(), seed=exp.seed) if paced else model


SAMPLER_SHARE = 0.05  # of a search's wall time, the most its sampler's model may take (bench/scale.py)
SAMPLER_GRACE_S = 2.0  # and this much more: a search's first trials, proposed all at once, are never paced


class PacedSampler(BaseSampler):
    """An Optuna sampler whose model may take ``share`` of the search's wall time; past that, it proposes at random.

    A model's cost per proposal grows with the trials it has seen (bench/scale.py measures TPE and GP at
    100, 1,000 and 10,000 trials): with trials of minutes it never matters, with thousands of short trials
    it would hold up every trial start. So a proposal is the model's while the model's time so far is
    within ``share`` of the wall time since the first proposal (plus ``grace_s``), and the random sampler's
    otherwise, until the wall time catches up; one line says when that starts. Below the share nothing
    changes: every proposal is the model's, as without pacing.
    """

    def __init__(self, model: Any, name: str, share: float = SAMPLER_SHARE, grace_s: float = SAMPLER_GRACE_S,
                 seed: int | None = None) -> None:
        from optuna.samplers import RandomSampler

        self.model, self.name, self.share, self.grace_s = model, name, share, grace_s
        self.random = RandomSampler(seed=seed)
        self.model_s, self.started = 0.0, None  # the model's seconds, and when the first proposal came
        self.proposals, self.at_random = 0, 0
        self.paced: set[int] = set()  # numbers of the trials being proposed at random

    def __getstate__(self) -> dict:  # a copy (Ray's saved searcher; a resumed search) starts its clock afresh
        return {**self.__dict__, "model_s": 0.0, "started": None}

    def before_trial(self, study: Any, trial: Any) -> None:
        now = time.monotonic()
        self.started = now if self.started is None else self.started
        self.proposals += 1
        if self.model_s > self.share * (now - self.started) + self.grace_s:
            self.paced.add(trial.number)
            self.at_random += 1
            if self.at_random == 1:
                print(f"note: {self.name} took {self.model_s:.1f} s of the search's {now - self.started:.0f} s, more "
                      f"than {self.share:.0%}, at {len(study.trials)} trials: proposals now come from {self.name} "
                      f"while it stays within {self.share:.0%} of the wall time, at random otherwise", flush=True)
        self.model.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
        return {} if trial.number in self.paced else self._timed(self.model.infer_relative_search_space, study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict) -> dict:
        return {} if trial.number in self.paced else self._timed(self.model.sample_relative, study, trial,
                                                                 search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        if trial.number in self.paced:
            return self.random.sample_independent(study, trial, name, distribution)
        return self._timed(self.model.sample_independent, study, trial, name, distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.paced.discard(trial.number)
        self.model.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.model.reseed_rng()
        self.random.reseed_rng()

    def _timed(self, call: Any, *args: Any) -> Any:
        start = time.monotonic()
        try:
            return call(*args)
        finally:
            self.model_s += time.monotonic() - start


def make_scheduler(exp: Experiment, space: Space) -> Any:
    """The early stopping ``exp.scheduler`` names, on the epoch, with metric and mode set here only.

    ``asha``: Ray's ASHA (stopping-based; with ``brackets > 1`` its asynchronous Hyperband).
    ``reliable``: the same brackets, a new trial's bracket drawn by how well each bracket's first
    rung has ranked trials so far (:class:`~tuner.schedulers.ReliableHyperBandScheduler`).
    ``fifo``: none. Every scheduler judges the task metric alone, in a multi-objective search too.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if exp.scheduler == "fifo":
        return FIFOScheduler()
    rungs = dict(time_attr="training_iteration", metric=space.metric, mode=space.mode, max_t=exp.max_epochs,
                 grace_period=exp.grace_period, reduction_factor=exp.reduction_factor, brackets=exp.brackets)
    if exp.scheduler == "reliable":
        from tuner.schedulers import ReliableHyperBandScheduler

        return ReliableHyperBandScheduler(**rungs, seed=exp.seed)
    return ASHAScheduler(**rungs)


def starting_points(exp: Experiment, image_size: int) -> list[dict]:
    """Configurations tried first: an earlier run's best (``--warm-start``), then the space's default."""
    from search_spaces import default_params

    points = []
    if exp.warm_start:
        from tuner.results import top_params

        points = top_params(Path(exp.warm_start), exp.space, WARM_START_TOP)
    default = default_params(exp.space, size=exp.size, image_size=image_size)
    if default not in points:
        points.append(default)
    return points
