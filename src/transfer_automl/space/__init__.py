"""Search spaces: declarative categorical decisions, optionally conditional. Imports no torch."""

from transfer_automl.space.builtin import BUILTIN_SPACES, MNMS_TEXT, TAML_TEXT, get_space
from transfer_automl.space.decisions import INACTIVE, Choice, Condition, Decision, SearchSpace
from transfer_automl.space.io import load_space, save_space, space_from_dict
from transfer_automl.space.merge import (
    ROOT_DECISION,
    is_merged,
    merge_spaces,
    split_config,
    subspace_choice_for,
)

__all__ = [
    "BUILTIN_SPACES", "INACTIVE", "MNMS_TEXT", "ROOT_DECISION", "TAML_TEXT", "Choice", "Condition", "Decision",
    "SearchSpace", "get_space", "is_merged", "load_space", "merge_spaces", "save_space", "space_from_dict",
    "split_config", "subspace_choice_for",
]
