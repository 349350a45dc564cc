"""Search spaces: declarative categorical decisions. Imports no torch."""

from transfer_automl.space.builtin import BUILTIN_SPACES, MNMS_TEXT, TAML_TEXT, get_space
from transfer_automl.space.decisions import Choice, Decision, SearchSpace
from transfer_automl.space.io import load_space, save_space, space_from_dict

__all__ = [
    "BUILTIN_SPACES", "MNMS_TEXT", "TAML_TEXT", "Choice", "Decision", "SearchSpace",
    "get_space", "load_space", "save_space", "space_from_dict",
]
