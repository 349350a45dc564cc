"""Policies that sample one action per decision of a search space, conditioned on a task."""

from transfer_automl.controllers.lstm import LSTMController, LSTMControllerConfig, Rollout

__all__ = ["LSTMController", "LSTMControllerConfig", "Rollout"]
