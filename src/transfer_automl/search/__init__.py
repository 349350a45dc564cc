"""Ask/tell searches (registered by name), the trial ledger and self-describing checkpoints."""

from transfer_automl.search.base import SEARCHES, Search, Trial, make_search, register_search
from transfer_automl.search.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from transfer_automl.search.ledger import SCHEMA as LEDGER_SCHEMA
from transfer_automl.search.ledger import Ledger, LedgerRow
from transfer_automl.search.multitask import ControllerSearch, ReinforceSearch

# Importing a method's module registers it by name (see search/methods.py).
from transfer_automl.search import methods  # noqa: E402,F401  isort: skip

__all__ = [
    "FORMAT_VERSION", "LEDGER_SCHEMA", "SEARCHES", "ControllerSearch", "Ledger", "LedgerRow",
    "ReinforceSearch", "Search", "Trial", "load_checkpoint", "make_search", "register_search", "save_checkpoint",
]
