"""TPE (Bergstra et al. 2011) through optuna's ask/tell interface, one optuna study per task.

Each decision is an `optuna.distributions.CategoricalDistribution` over its choice *indices*
(0..cardinality-1), named after the decision, so any choice type works and optuna never sees a
choice value. Per task t the study maximizes the reward; trials of task t only reach study t.

Matching proposals to results: `_propose` does not see trial ids, but a trial id is
"<search_id>/<step>/<k>" and both parts are known when proposing (the search's step and the
position k in the batch), and come back as `Trial.controller_step` and `Trial.index`. So each
asked optuna trial is kept as pending under the key (step, k), together with its task and
configuration, and `_learn` pops it by that key. This holds whatever order or grouping the
results are told in. A told trial with no matching pending entry (its proposal was lost in a
reload, or the trial was made elsewhere, or its task or configuration differ from what was
proposed under that id) is not lost: it is added to its task's study as a completed trial with
`study.add_trial`; a mismatched pending entry is marked FAIL. Asking again at the same step (a
retried round, which reuses the trial ids) marks the round's earlier pending trials FAIL, so they
stop counting as running trials for the constant liar. Proposals of earlier steps that were never
told stay pending (and running for the constant liar) until their results arrive.

Randomness: optuna's samplers keep an RNG that cannot be saved as plain data, so every proposal
gets a fresh `TPESampler(seed=s, n_startup_trials=...)` with s drawn from `self.generator`
(saved by the base class). Together with the completed trials (saved in trial order) this makes a
reloaded search propose exactly what the original would have. The sampler keeps optuna 5's
defaults otherwise (multivariate TPE for one objective; constant liar: pending trials count as
bad ones, so the proposals within one batch spread out).

State: per task the completed trials as plain lists (configuration, reward), in optuna's trial
order; `load_state_dict` rebuilds the studies with `study.add_trial(create_trial(...))`. Pending
(asked but not told) trials are not saved: after a reload their results are still accepted (and
added as completed trials), but the reloaded search's proposals can differ from the original's
for as long as the original had them pending. Checkpoints in the search step are written after
`tell`, when nothing is pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from transfer_automl.errors import ConfigError
from transfer_automl.search.base import Search, Trial, register_search
from transfer_automl.search.random_search import check_state_header
from transfer_automl.space import SearchSpace

_SEED_RANGE = 2**31 - 1


@dataclass
class _Pending:
    task_index: int
    trial: Any  # optuna.trial.Trial, asked and not yet told
    actions: list[int]


@register_search("tpe")
class TPESearch(Search):
    def __init__(self, space: SearchSpace, tasks: list[str], search_id: str, seed: int = 0,
                 n_startup_trials: int = 10):
        super().__init__(space, tasks, search_id, seed)
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 0:
            raise ConfigError(f"n_startup_trials must be an integer >= 0, got {n_startup_trials!r}")
        import optuna  # deferred: importing optuna takes a while and only TPE needs it

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.n_startup_trials = n_startup_trials
        self.distributions = {
            d.name: optuna.distributions.CategoricalDistribution(choices=list(range(len(d.choices))))
            for d in space.decisions
        }
        self.studies = [self._new_study() for _ in self.tasks]
        self.pending: dict[tuple[int, int], _Pending] = {}  # (step, k) -> asked optuna trial

    def _new_study(self):
        import optuna

        return optuna.create_study(direction="maximize", sampler=self._sampler(0))

    def _sampler(self, seed: int):
        import optuna

        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    # -- proposing ----------------------------------------------------------------------------

    def _propose(self, task_indices: list[int]) -> list[list[int]]:
        for key in [key for key in self.pending if key[0] == self.step]:
            self._fail(self.pending.pop(key))  # a retried round: its earlier proposals are void
        proposals = []
        for k, t in enumerate(task_indices):
            seed = int(torch.randint(_SEED_RANGE, (1,), generator=self.generator))
            study = self.studies[t]
            study.sampler = self._sampler(seed)
            asked = study.ask(self.distributions)
            actions = [int(asked.params[name]) for name in self.space.names]
            self.pending[(self.step, k)] = _Pending(t, asked, actions)
            proposals.append(actions)
        return proposals

    # -- learning -----------------------------------------------------------------------------

    def _learn(self, trials: list[Trial], rewards: list[float]) -> dict[str, float]:
        from optuna.trial import TrialState

        for trial, reward in zip(trials, rewards, strict=True):
            actions = [int(a) for a in trial.actions]
            entry = self.pending.pop((trial.controller_step, trial.index), None)
            if entry is not None and entry.task_index == trial.task_index and entry.actions == actions:
                self.studies[trial.task_index].tell(entry.trial, reward)
            else:
                if entry is not None:
                    self._fail(entry)
                self.studies[trial.task_index].add_trial(self._completed(actions, reward))
        metrics = {
            f"controller/completed/{task}": float(len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
            for task, study in zip(self.tasks, self.studies, strict=True)
        }
        metrics["controller/pending"] = float(len(self.pending))
        return metrics

    def _fail(self, entry: _Pending) -> None:
        from optuna.trial import TrialState

        self.studies[entry.task_index].tell(entry.trial, state=TrialState.FAIL)

    def _completed(self, actions: list[int], reward: float):
        import optuna

        params = dict(zip(self.space.names, actions, strict=True))
        return optuna.trial.create_trial(params=params, distributions=self.distributions, value=reward)

    def _history(self, study) -> dict[str, list]:
        """The study's completed trials in trial order: {"actions": [[...]], "rewards": [...]}."""
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = sorted(done, key=lambda frozen: frozen.number)
        return {
            "actions": [[int(frozen.params[name]) for name in self.space.names] for frozen in done],
            "rewards": [float(frozen.value) for frozen in done],
        }

    # -- state --------------------------------------------------------------------------------

    def settings(self) -> dict[str, int]:
        return {"n_startup_trials": self.n_startup_trials}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(), "settings": self.settings(),
            "history": [self._history(study) for study in self.studies],  # per task, trial order
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(self, state, self.settings())
        super().load_state_dict(state)
        self.pending = {}
        self.studies = []
        for history in state["history"]:
            study = self._new_study()
            study.add_trials([self._completed([int(a) for a in actions], float(r))
                              for actions, r in zip(history["actions"], history["rewards"], strict=True)])
            self.studies.append(study)
