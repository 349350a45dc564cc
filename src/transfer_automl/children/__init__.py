"""Child models: config -> network, embedding modules, Proximal Adagrad, the trainers.

Every trainer satisfies the `ChildTrainer` protocol (children/base.py). Importing this package is
light; torch loads with the trainers.
"""

from transfer_automl.children.base import ChildResult, ChildTrainer

__all__ = ["ChildResult", "ChildTrainer"]
