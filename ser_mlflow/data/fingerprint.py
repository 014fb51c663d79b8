"""A cheap identity of a whole data root, so that runs of different corpora never mix.

``Corpus.digest`` hashes the bytes of what one run read (its feature sets). Sweeps and
queries across feature sets need one identity for the root as a whole: the label files'
bytes plus every feature file's name and size. Reading all feature bytes (about 1 GB at
full scale) for every query would cost seconds; names and sizes catch a different corpus,
a different scale or seed, and any added or removed file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ser_mlflow.data.layout import LABELS_FOLDER, DataError


def corpus_fingerprint(root: str | Path) -> str:
    """Hex digest (24 chars) identifying a data root.

    Raises:
        DataError: the root does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist")
    h = hashlib.sha256()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.glob("*.csv")):
            try:
                h.update(f"{folder.name}/{f.name}:{f.stat().st_size}\n".encode())
                if folder.name == LABELS_FOLDER:
                    h.update(f.read_bytes())
            except OSError as exc:  # a link loop, a dangling link, no permission
                raise DataError(f"{f}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()[:24]


def labels_fingerprint(labels: str | Path, partition: str = "Devel") -> str:
    """Hex digest (24 chars) of one partition's label files: names and bytes.

    What imported predictions were scored on, wherever their labels folder lives: `fusion`
    finds them by the labels of its data root, not by the folder around the labels.

    Raises:
        DataError: the folder does not exist.
    """
    labels = Path(labels)
    if not labels.is_dir():
        raise DataError(f"{labels}: labels folder does not exist")
    h = hashlib.sha256()
    for f in sorted(labels.glob(f"{partition}_*.csv")):
        try:
            h.update(f"{f.name}\n".encode())
            h.update(f.read_bytes())
        except OSError as exc:  # as corpus_fingerprint: a link loop, no permission
            raise DataError(f"{f}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()[:24]
