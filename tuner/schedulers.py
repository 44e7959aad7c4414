"""Asynchronous Hyperband whose brackets are chosen by how well their first rung ranks trials.

ASHA judges every trial at its first rung. When that rung ranks trials by noise (one epoch inside a
learning-rate warm-up, on a small validation set) it stops configurations that would have been the
best. Hyperband's answer is to hedge over brackets whose first rungs lie later; Hyper-Tune (Li et
al., VLDB 2022, arXiv:2201.06834) goes further and measures, as the search runs, how well each
fidelity's ranking agrees with a higher one, and draws brackets by that agreement. Syne Tune removed
its Hyper-Tune in 0.14, and Ray has none, so this is written here, on top of Ray's own
``AsyncHyperBandScheduler`` (its brackets, rungs and cut-offs are Ray's; only the choice of bracket
for a new trial differs).

The rule, "in the spirit of" Hyper-Tune rather than a copy of it:

- every reported value is kept per trial and per time (epoch);
- the reliability of a rung at time ``r`` is Kendall's tau between the values trials had at ``r``
  and the values the same trials had at the next rung (``r * reduction_factor``, or ``max_t``),
  clipped to [0, 1]; until ``min_pairs`` trials have both, it is 1 (Ray's behaviour);
- a new trial goes to bracket ``s`` with probability proportional to Ray's own weight
  (``e ** number_of_rungs``) times the reliability of that bracket's first rung. A bracket with no
  rung (it runs every trial to ``max_t``) has reliability 1.

So when the first epoch's ranking agrees with the third's, it behaves as ASHA; when it does not, new
trials go to brackets that judge them later, and the whole search pays for the noisy rung only until
it has measured it.
"""

from __future__ import annotations

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler


class ReliableHyperBandScheduler(AsyncHyperBandScheduler):
    """Ray's asynchronous Hyperband with brackets drawn by rung reliability (see the module docstring).

    Takes Ray's arguments (``time_attr``, ``metric``, ``mode``, ``max_t``, ``grace_period``,
    ``reduction_factor``, ``brackets``) plus ``min_pairs`` (trials measured at both fidelities before a
    rung's reliability is trusted) and ``seed`` (the bracket draws; Ray's own use NumPy's global state).
    """

    def __init__(self, *args, min_pairs: int = 6, seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._min_pairs = int(min_pairs)
        self._values: dict[str, dict[float, float]] = {}
        self._rng = np.random.default_rng(seed)

    # -------------------------------------------------------------- what Ray calls

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._metric or not self._metric_op:
            super().on_trial_add(tune_controller, trial)  # Ray's own one-line error
        weights = self.bracket_weights()
        index = self._rng.choice(len(self._brackets), p=weights / weights.sum())
        self._trial_info[trial.trial_id] = self._brackets[index]

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._remember(trial.trial_id, result)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._remember(trial.trial_id, result)
        super().on_trial_complete(tune_controller, trial, result)

    # -------------------------------------------------------------- reliability

    def first_rungs(self) -> list[float | None]:
        """Each bracket's first rung time (None for a bracket that never stops a trial)."""
        return [min(m for m, _ in b._rungs) if b._rungs else None for b in self._brackets]

    def reliability(self, rung: float) -> float:
        """Kendall's tau (clipped to [0, 1]) between values at ``rung`` and at the next rung; 1 until measured."""
        from scipy.stats import kendalltau

        higher = min(rung * self._reduction_factor, self._max_t)  # Ray's own settings
        pairs = [(at(v, rung), at(v, higher)) for v in self._values.values()
                 if at(v, rung) is not None and at(v, higher) is not None]
        if len(pairs) < self._min_pairs:
            return 1.0
        low, high = np.array(pairs).T
        if np.ptp(low) == 0 or np.ptp(high) == 0:
            return 1.0
        tau = kendalltau(low, high).statistic
        return float(min(max(tau, 0.0), 1.0)) if np.isfinite(tau) else 1.0

    def bracket_weights(self) -> np.ndarray:
        """Ray's bracket weights times each bracket's first-rung reliability (a floor keeps them positive)."""
        sizes = np.array([len(b._rungs) for b in self._brackets], dtype=float)
        prior = np.e ** (sizes - sizes.max())
        rely = np.array([1.0 if r is None else self.reliability(r) for r in self.first_rungs()])
        return np.maximum(prior * rely, 1e-6)

    def _remember(self, trial_id: str, result: dict) -> None:
        if self._time_attr in result and self._metric in result and result[self._metric] is not None:
            self._values.setdefault(trial_id, {})[float(result[self._time_attr])] = float(result[self._metric])


def at(values: dict[float, float], time: float) -> float | None:
    """The value a trial reported at the first report at or after ``time`` (how Ray's rungs read it)."""
    later = [t for t in values if t >= time]
    return values[min(later)] if later else None
