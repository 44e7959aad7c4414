"""Optuna samplers of the project's own: a search centred on a prior point.

:class:`CentredSampler` puts a prior on the space's default point, as piBO (Hvarfner et al. 2022) and
PriorBand (Mallik et al. 2023) put one on an expert's guess, in its simplest form: each proposal is drawn
near the centre, in the space's unit coordinates. It is ``--searcher centred`` (radius
:data:`CENTRED_RADIUS`, fixed), and ``bench/lctable.py`` draws its perturbation rows with it.
Measured against the other strategies in ``bench/strategies.py``.
"""

from __future__ import annotations

import math

import numpy as np
from optuna.samplers import BaseSampler


def proposals(sampler: BaseSampler, space: str, n: int, size: str = "small", image_size: int = 64) -> list[dict]:
    """The first ``n`` configurations ``sampler`` proposes for ``space`` (suggest-name dicts), told nothing useful
    back: what a sampler draws before any result steers it (tables of perturbations, checks of where it draws)."""
    import optuna

    from search_spaces import define_by_run

    fn = define_by_run(space, size=size, image_size=image_size)
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        fn(trial)
        study.tell(trial, 0.0)
        out.append(dict(trial.params))
    return out


# --searcher centred: the standard deviation of a draw around the default, in unit coordinates, and the
# chance a categorical leaves the default's choice. bench/strategies.py replays it as centred/fixed+asha.
CENTRED_RADIUS = 0.25


class CentredSampler(BaseSampler):
    """An Optuna sampler that draws around a centre: the space's default point, as piBO and PriorBand put a prior there.

    Coordinates are the space's unit ones (``search_spaces.encoding``): a number is drawn from a normal
    of standard deviation ``radius`` around the centre's coordinate, truncated to [0, 1] (a log range
    in log); a categorical keeps the centre's choice with probability ``1 - radius`` and otherwise takes
    one of the others at random; a parameter the centre does not use (``momentum`` at Adam) is drawn
    uniformly, as is every parameter of a share ``uniform`` of the trials. ``lctable.py`` draws its
    perturbation rows with it at a fixed radius.

    With ``widen > 1`` it follows the search, as a trust region that grows on success does (TuRBO):
    each finished trial that beats the centre's trial (it went further, or has a better value at the
    epoch it stopped at, which is how ASHA compares) becomes the centre, and the radius is multiplied by
    ``widen`` up to ``max_radius``. The first finished trial stands for the default until one beats it.
    """

    def __init__(self, centre: dict, radius: float, *, uniform: float = 0.0, widen: float = 1.0,
                 max_radius: float = 1.0, seed: int | None = None):
        import optuna

        self.centre, self.radius, self.uniform = dict(centre), float(radius), float(uniform)
        self.widen, self.max_radius = float(widen), float(max_radius)
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._plan: dict[int, tuple[dict | None, float]] = {}

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def before_trial(self, study, trial) -> None:
        centre, radius = self.follow(study) if self.widen > 1 else (self.centre, self.radius)
        self._plan[trial.number] = (None if self._rng.random() < self.uniform else centre, radius)

    def after_trial(self, study, trial, state, values) -> None:
        self._plan.pop(trial.number, None)

    def follow(self, study) -> tuple[dict, float]:
        """(centre, radius) after the finished trials, in the order they finished (see the class docstring)."""
        from optuna.trial import TrialState

        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.intermediate_values]
        done.sort(key=lambda t: (t.datetime_complete, t.number))
        centre, radius, ref = self.centre, self.radius, None
        for t in done:
            if ref is None:
                ref = t
                continue
            epoch = max(t.intermediate_values)
            theirs = ref.intermediate_values.get(epoch)
            if theirs is None or sign * (t.intermediate_values[epoch] - theirs) > 0:
                ref, centre, radius = t, dict(t.params), min(self.max_radius, radius * self.widen)
        return centre, radius

    def sample_independent(self, study, trial, name, dist):
        from optuna.distributions import CategoricalDistribution, IntDistribution

        centre, radius = self._plan.get(trial.number, (self.centre, self.radius))
        if centre is None or name not in centre:
            return self._random.sample_independent(study, trial, name, dist)
        value = centre[name]
        if isinstance(dist, CategoricalDistribution):
            choices = list(dist.choices)
            if value not in choices:
                return self._random.sample_independent(study, trial, name, dist)
            others = [c for c in choices if c != value]
            if others and self._rng.random() < min(1.0, radius):
                return others[self._rng.integers(len(others))]
            return value
        low, high = float(dist.low), float(dist.high)
        if high <= low:
            return dist.low
        to_unit = (lambda v: (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))) if dist.log \
            else (lambda v: (v - low) / (high - low))
        u0 = to_unit(min(max(float(value), low), high))
        for _ in range(100):  # a normal truncated to [0, 1]
            u = self._rng.normal(u0, radius)
            if 0.0 <= u <= 1.0:
                break
        else:
            u = min(max(u, 0.0), 1.0)
        x = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if dist.log else low + u * (high - low)
        step = getattr(dist, "step", None)
        if step:
            x = low + round((x - low) / step) * step
        x = min(max(x, low), high)
        return int(round(x)) if isinstance(dist, IntDistribution) else float(x)
