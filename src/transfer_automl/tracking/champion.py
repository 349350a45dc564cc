"""The champion of each task: a search's best child, retrained, logged and registered in MLflow.

The ledger keeps configurations, not models, so each task's model is trained again by the refit
(study/refit.py): the best row retrained with its seed, reproducing the row's accuracies (refit
none), or the best of the top configurations retrained at the full budget (refit best/topk, tags
`taml.refit.*`, `taml.model_source` = refit), or all of them as one ensemble (refit ensemble,
`taml.model_source` = ensemble, on its first member's trial). The model is logged
into the trial's child run as a self-contained pyfunc model that takes raw texts
(`ServingModel`, written by serving/export.py and logged by tracking/mlflow.py; safetensors weights,
nothing pickled) and registered as a new
version of `taml-<task>`, tagged with where it comes from (search id, trial id, ledger file,
validation and test accuracy, configuration). The alias `champion` moves to the new version only
when its validation accuracy is strictly higher than the current champion's, so a later, worse
search adds a version without taking the alias; test accuracy is reported, never selected on.
Registering the same trial again (a search, then `taml runs register`) reuses its version.

What is registered, and when the alias moves; the search-side part (which child, retrained how)
is study/champions.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

CHAMPION_ALIAS = "champion"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def registered_model_name(task: str) -> str:
    """`taml-<task>`, with anything but letters, digits, `_`, `.` and `-` replaced by `-`."""
    return "taml-" + _UNSAFE.sub("-", task).strip("-")


def moves_alias(candidate_val_accuracy: float, champion_val_accuracy: float | None) -> bool:
    """The alias goes to the candidate when there is no champion or the candidate is strictly better."""
    return champion_val_accuracy is None or candidate_val_accuracy > champion_val_accuracy


@dataclass(frozen=True)
class ChampionCandidate:
    """The best child of one task in one search (its model retrained from the ledger row)."""

    task: str
    search_id: str
    trial_id: str
    ledger_file: str  # the ledger round file that holds the trial's row
    val_accuracy: float
    test_accuracy: float
    config: dict[str, Any] = field(default_factory=dict)
    # How a refit trained the model (study/refit.py: mode, k, seed, steps, max_steps, cost_s,
    # search_val_accuracy); empty for the ledger's own child (refit none).
    refit: dict[str, str] = field(default_factory=dict)

    @property
    def model_source(self) -> str:
        """"refit" (retrained at the full budget), "ensemble" (the top refits averaged, registered on
        the first member's trial) or "ledger" (the child as the search trained it): one trial can
        have one version of each."""
        if self.refit.get("ensemble_trial_ids"):
            return "ensemble"
        return "refit" if self.refit else "ledger"

    def tags(self) -> dict[str, str]:
        return {
            "taml.task": self.task, "taml.search_id": self.search_id, "taml.trial_id": self.trial_id,
            "taml.ledger_file": self.ledger_file, "taml.val_accuracy": repr(self.val_accuracy),
            "taml.test_accuracy": repr(self.test_accuracy), "taml.config": json.dumps(self.config, sort_keys=True),
            "taml.model_source": self.model_source, **{f"taml.refit.{k}": v for k, v in self.refit.items()},
        }

    def description(self) -> str:
        how = (f"Refit at the full budget with early stopping ({self.refit.get('steps')} of "
               f"{self.refit.get('max_steps')} steps, seed {self.refit.get('seed')}), chosen among the top "
               f"configurations by refit validation accuracy; " if self.refit else "")
        if self.refit.get("ensemble_trial_ids"):
            how = ("An ensemble, the mean of the class probabilities of the top configurations refit at the full "
                   f"budget with early stopping (trials {self.refit['ensemble_trial_ids']}; this trial's "
                   "configuration below); ")
        return (f"Best child for task {self.task} in search {self.search_id} (trial {self.trial_id}, "
                f"ledger {self.ledger_file}): {how}validation accuracy {self.val_accuracy:.4f}, test accuracy "
                f"{self.test_accuracy:.4f}. Configuration: {json.dumps(self.config, sort_keys=True)}. "
                "A pyfunc model (mlflow.pyfunc.load_model, mlflow models serve, KServe): raw texts in (a DataFrame "
                "column `text` or a list of strings), the label and one `prob_<class>` column per class out. "
                "Weights are safetensors; nothing is unpickled.")


@dataclass(frozen=True)
class RegisteredChampion:
    """What the registry holds for a candidate after it was offered."""

    name: str  # registered model name
    version: str
    run_id: str  # the child run the model is logged in
    model_uri: str  # loads with mlflow.pyfunc.load_model: raw texts in, labels out
    candidate: ChampionCandidate
    champion: bool  # the alias points at this version now
    previous_champion: str | None  # the version that held the alias before (None: there was none)
    new_version: bool  # False when this trial was registered before

    @property
    def alias_moved(self) -> bool:
        return self.champion and self.previous_champion != self.version


@dataclass
class ChampionReport:
    search_id: str
    tracking_location: str
    registered: list[RegisteredChampion] = field(default_factory=list)
    skipped: str = ""  # why nothing was registered (a tabular search, no successful trial), else ""

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "registered": [
            {"task": r.candidate.task, "name": r.name, "version": r.version, "model_uri": r.model_uri,
             "trial_id": r.candidate.trial_id, "val_accuracy": r.candidate.val_accuracy,
             "test_accuracy": r.candidate.test_accuracy, "champion": r.champion, "alias_moved": r.alias_moved,
             "new_version": r.new_version}
            for r in self.registered]}

    def lines(self) -> list[str]:
        """One line per task, or the reason nothing was registered."""
        if self.skipped:
            return [f"models: none registered: {self.skipped}"]
        return [f"model:      {r.name} version {r.version} (val {r.candidate.val_accuracy:.4f}, trial "
                f"{r.candidate.trial_id}): " + (f"alias {CHAMPION_ALIAS}" + (" moved here" if r.alias_moved else "")
                                                if r.champion else f"{CHAMPION_ALIAS} stays version {r.previous_champion}")
                for r in self.registered]


@dataclass(frozen=True)
class ServingModel:
    """A champion ready to log as an MLflow pyfunc model (serving/export.py builds it)."""

    code_file: str  # the model's code (MLflow models from code): serving/champion_model.py
    bundle: str  # directory logged as the artifact `bundle`: meta.json and safetensors weights
    pip_requirements: list[str]  # exact pins of the serving environment
    input_example: list[str]  # texts for the input example
    classes: list[str]  # the output signature: `label` and `prob_<class>` per class
