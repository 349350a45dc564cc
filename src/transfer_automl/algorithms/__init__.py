"""Pure update rules for controllers: `update(controller, rollout, rewards) -> metrics`.

`UPDATE_RULES` maps a rule's name to its class; each class takes (controller, config), where
config is its config dataclass or a dict of its fields, and has `state_dict`/`load_state_dict`.
"""

from transfer_automl.algorithms.baselines import TaskBaselines
from transfer_automl.algorithms.reinforce import Reinforce, ReinforceConfig

UPDATE_RULES: dict[str, type] = {}


def register_update_rule(cls: type) -> type:
    if cls.name in UPDATE_RULES:
        raise ValueError(f"update rule {cls.name!r} is already registered")
    UPDATE_RULES[cls.name] = cls
    return cls


from transfer_automl.algorithms.ppo import PPO, PPOConfig  # noqa: E402
from transfer_automl.algorithms.pqt import PQT, PQTConfig  # noqa: E402

for _rule in (Reinforce, PPO, PQT):
    register_update_rule(_rule)

__all__ = ["PPO", "PQT", "UPDATE_RULES", "PPOConfig", "PQTConfig", "Reinforce", "ReinforceConfig", "TaskBaselines",
           "register_update_rule"]
