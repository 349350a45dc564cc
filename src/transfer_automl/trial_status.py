"""The status a trial ends with, as written to the ledger's `status` column."""

STATUS_OK = "ok"  # the child trained to the end; its accuracies are real
STATUS_INVALID = "invalid"  # the configuration cannot be built (e.g. both towers disabled)
STATUS_DIVERGED = "diverged"  # the training loss became non-finite
STATUS_FAILED = "failed"  # an unexpected error; the message is kept in the ledger
STATUS_TIMEOUT = "timeout"  # stopped after the per-trial time limit (ChildTrainerConfig.timeout_s)
