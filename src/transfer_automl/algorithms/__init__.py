"""Pure update rules for controllers."""

from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.algorithms.reinforce import Reinforce, ReinforceConfig

__all__ = ["Reinforce", "ReinforceConfig", "TaskBaselines"]
