"""Ask/tell search loop, trial ledger and self-describing checkpoints."""

from transfer_automl.search.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from transfer_automl.search.ledger import SCHEMA as LEDGER_SCHEMA
from transfer_automl.search.ledger import Ledger
from transfer_automl.search.multitask import MultitaskSearch, Trial

__all__ = ["FORMAT_VERSION", "LEDGER_SCHEMA", "Ledger", "MultitaskSearch", "Trial", "load_checkpoint", "save_checkpoint"]
