"""Data layer: read and validate the AVEC 2019 CES layout, prepare arrays, synthesise.

``avec`` reads ``<root>/<feature_set>/<Partition>_<Culture>_<NN>.csv`` plus ``labels/``,
aligns features with labels, and holds padding, standardisation, the annotator-delay
shift and the AVEC CSV writer. ``synthetic`` writes a stand-in corpus in the same layout
(NOT real data). Neither imports TensorFlow or MLflow.
"""

from ser_mlflow.data.avec import (
    LABELS_FOLDER,
    PARTITIONS,
    Corpus,
    DataError,
    Recording,
    Standardizer,
    canonical_recording_name,
    list_feature_sets,
    load_corpus,
    load_partition_features,
    pad_sequences,
    read_avec_csv,
    shift_labels,
    unshift_predictions,
    write_avec_csv,
)
from ser_mlflow.data.synthetic import SCALES, SyntheticSummary, write_synthetic_corpus

__all__ = [
    "LABELS_FOLDER",
    "PARTITIONS",
    "SCALES",
    "Corpus",
    "DataError",
    "Recording",
    "Standardizer",
    "SyntheticSummary",
    "canonical_recording_name",
    "list_feature_sets",
    "load_corpus",
    "load_partition_features",
    "pad_sequences",
    "read_avec_csv",
    "shift_labels",
    "unshift_predictions",
    "write_avec_csv",
    "write_synthetic_corpus",
]
