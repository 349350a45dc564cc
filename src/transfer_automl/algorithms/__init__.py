"""Pure update rules for controllers: `update(controller, rollout, rewards) -> metrics`.

Every rule satisfies the `UpdateRule` protocol (algorithms/base.py). `UPDATE_RULES` maps a rule's
name to its class; each class takes (controller, config), where config is its config dataclass or
a dict of its fields, and has `state_dict`/`load_state_dict`. Importing this package registers
"reinforce", "ppo" and "pqt".
"""

from transfer_automl.algorithms.base import (
           UPDATE_RULES,
           UpdateRule,
           UpdateRuleConfig,
           register_update_rule,
)
from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.algorithms.ppo import PPO, PPOConfig
from transfer_automl.algorithms.pqt import PQT, PQTConfig
from transfer_automl.algorithms.reinforce import Reinforce, ReinforceConfig

__all__ = ["PPO", "PQT", "UPDATE_RULES", "PPOConfig", "PQTConfig", "Reinforce", "ReinforceConfig", "TaskBaselines",
           "UpdateRule", "UpdateRuleConfig", "register_update_rule"]
