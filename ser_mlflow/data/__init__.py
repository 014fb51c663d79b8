"""Data layer: read and validate the AVEC 2019 CES layout, prepare arrays, synthesise.

``layout``: partitions, the labels folder, recording names and ``DataError``;
``avec_csv``: one ``name;time;v1...`` file read with complete validation, and written;
``corpus``: ``<root>/<feature_set>/<Partition>_<Culture>_<NN>.csv`` plus ``labels/``
aligned per recording; ``preprocess``: padding, standardisation, the annotator-delay
shift; ``synthetic`` writes a stand-in corpus in the same layout (NOT real data);
``extract`` computes features from audio; ``fingerprint`` digests a corpus. None imports
TensorFlow or MLflow.
"""

from ser_mlflow.data.avec_csv import read_avec_csv, write_avec_csv
from ser_mlflow.data.corpus import (
    Corpus,
    Recording,
    list_feature_sets,
    load_corpus,
    load_partition_features,
)
from ser_mlflow.data.layout import LABELS_FOLDER, PARTITIONS, DataError, canonical_recording_name
from ser_mlflow.data.preprocess import (
    Standardizer,
    pad_sequences,
    shift_labels,
    unshift_predictions,
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
