"""Small conditional search spaces shared by the space and controller tests."""

from __future__ import annotations

from transfer_automl.space import Condition, Decision, SearchSpace

# opt -> (adam) beta -> (0.99) beta2 ; opt -> (sgd) momentum ; lr unconditional
OPT = SearchSpace("opt", (
    Decision("lr", (0.01, 0.1)),
    Decision("opt", ("sgd", "adam", "adagrad")),
    Decision("momentum", (0.0, 0.9), condition=Condition("opt", ("sgd",))),
    Decision("beta", (0.9, 0.99), condition=Condition("opt", ("adam",))),
    Decision("beta2", (0.999, 0.9999, 0.99999), condition=Condition("beta", (0.99,))),
))
