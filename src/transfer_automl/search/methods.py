"""Import every search method so that each registers its name (SEARCHES, `make_search`).

Controller searches pair a controller with an update rule:
- reinforce: task-conditioned LSTM + REINFORCE (Transfer AutoML)
- ppo: task-conditioned LSTM + off-policy PPO with replay and Polyak averaging (MNMS)
- pqt: task-conditioned LSTM + priority-queue training with entropy (Transfer NAS, appendix A)
- transformer: attention agent over (merged, conditional) spaces + PQT with entropy (Transfer NAS)

Transfer from earlier searches' ledgers without a controller:
- rank-ensemble: source surrogates and a target surrogate weighted by ranking loss (RGPE)
"""

from transfer_automl.search import evolution, random_search, rank_ensemble, tpe  # noqa: F401
from transfer_automl.search.multitask import register_controller_search

register_controller_search("ppo", "lstm", "ppo")
register_controller_search("pqt", "lstm", "pqt")
register_controller_search("transformer", "transformer", "pqt")
