"""How trials that ASHA stopped are told to Optuna: as PRUNED, not as COMPLETE.

Ray's ``OptunaSearch`` creates its study with a no-op pruner, reports every epoch as an
intermediate value, and on completion tells Optuna the trial's *last* value as COMPLETE, whether
the trial ran its full budget or ASHA stopped it after one epoch. TPE then ranks an epoch-1 AUROC
against epoch-30 AUROCs of finished trials. A stopped trial lands in TPE's "bad" group for being
short rather than for being bad, and with few finished trials the "good" group fills with whatever
happened to run longest.

Our choice: a trial stopped before ``max_epochs`` is told as PRUNED. Its per-epoch values are
already in the study as intermediate values, and Optuna's TPE ranks pruned trials below completed
ones, ordered by how far they got and then by their last intermediate value. That is exactly what
ASHA's decision means: "not among the best at the rung where it was judged". A trial that
diverged is told as COMPLETE with the task's worst objective value, so TPE learns to avoid that
region instead of treating it as merely unfinished. Errors stay FAIL (Ray's behaviour).

With several objectives (the task metric and cost measures, ``metric=[...]``) the same choice
holds, for the same reason: a stopped trial's metric is of a shorter training, and its cost is
real but says nothing about whether the configuration is good. Optuna accepts PRUNED in a
multi-objective study; what differs is that it keeps no intermediate values there
(``Trial.report`` is single-objective only, so Ray's ``OptunaSearch`` reports no epochs), and
must not: TPE orders pruned trials by their last intermediate value through ``study.direction``,
which a multi-objective study refuses. Pruned trials therefore carry no values and rank equal,
all after the completed ones, which is what ASHA decided about them. A diverged trial is told
COMPLETE with the task's worst metric beside its measured cost.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class AshaAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells early-stopped trials to Optuna as PRUNED (see the module docstring)."""

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = int(max_epochs)

    @property
    def study(self):
        """The underlying Optuna study (for inspection and tests)."""
        return self._ot_study

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped_early = (
            result is not None and not error and not result.get("diverged")
            and result.get("training_iteration", self.max_epochs) < self.max_epochs
        )
        if not stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        from optuna.trial import TrialState

        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
