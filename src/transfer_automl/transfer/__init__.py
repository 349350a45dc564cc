"""Task transfer: task distances (Fisher log-determinant, controller task embeddings) and probes.

Importing this package is light; torch loads when a distance or probe is used.
"""

from transfer_automl.transfer.distances import (
    DISTANCES,
    DistanceMatrix,
    EmbeddingCosine,
    FisherLogDet,
    TaskDistance,
    fisher_ld,
    get_distance,
    register_distance,
)

__all__ = [
    "DISTANCES", "DistanceMatrix", "EmbeddingCosine", "FisherLogDet", "TaskDistance", "fisher_ld", "get_distance",
    "register_distance",
]
