"""The corpus: every feature set's files aligned with the labels, per partition
(DESIGN.md section 3)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_mlflow.data.avec_csv import Table, label_attributes, read_table
from ser_mlflow.data.layout import (
    LABELS_FOLDER,
    PARTITIONS,
    DataError,
    canonical_recording_name,
    listing,
    partition_of,
    scan_folder,
)


@dataclass(frozen=True, eq=False)
class Recording:
    """One recording, features (and labels) aligned frame by frame.

    Arrays are read-only so that a corpus shared between use cases cannot be changed
    in place by accident; copy before modifying.

    Attributes:
        name: canonical name, ``<Partition>_<Culture>_<NN>`` (e.g. ``Train_DE_01``).
        partition: ``Train``, ``Devel`` or ``Test``.
        culture: upper-case culture code from the file name (``DE``, ``HU``).
        timestamps: (T,) float64, from the label file when labels were read, else from
            the first feature file's frameTime column.
        features: (T, F) float32, raw (not standardised), the requested feature sets
            concatenated in the requested order.
        labels: (T, A) float32, or None when the partition was read without labels.
    """

    name: str
    partition: str
    culture: str
    timestamps: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.timestamps.shape[0])


@dataclass(frozen=True, eq=False)
class Corpus:
    """Recordings of the requested partitions and feature sets, plus what describes them.

    Attributes:
        root: the corpus root folder (absolute).
        feature_sets: feature-set folder names, in the order their columns are concatenated.
        feature_columns: ``<set>:<column>`` for every feature column; ``<column>`` is the
            header name, or ``f1``..``fN`` for a file without header.
        attributes: label columns after ``name;timestamp`` (e.g. arousal, valence, liking);
            empty when no labels were read.
        recordings: partition -> recordings sorted by name, for every requested partition;
            a partition with no files on disk maps to ``()``.
        digest: sha256 (hex) over the feature-set names, recording names and the bytes of
            every file read, so two runs with the same digest saw the same data.
    """

    root: Path
    feature_sets: tuple[str, ...]
    feature_columns: tuple[str, ...]
    attributes: tuple[str, ...]
    recordings: dict[str, tuple[Recording, ...]]
    digest: str

    def partition(self, name: str) -> tuple[Recording, ...]:
        """Recordings of one partition (``()`` when it has none on disk).

        Raises:
            ValueError: when ``name`` was not among the partitions loaded.
        """
        try:
            return self.recordings[name]
        except KeyError:
            raise ValueError(
                f"partition {name!r} was not loaded from {self.root}; loaded: "
                f"{', '.join(self.recordings) or 'none'} (pass it in partitions=...)"
            ) from None

    @property
    def n_features(self) -> int:
        """Number of feature columns F."""
        return len(self.feature_columns)


# ---------------------------------------------------------------------------------------
# the corpus


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise DataError(f"{path}: data root does not exist or is not a folder")
    return path


def list_feature_sets(root: str | Path) -> tuple[str, ...]:
    """Feature-set folders under a corpus root: every sub-folder except ``labels``.

    Args:
        root: the corpus root.

    Returns:
        Folder names, sorted.

    Raises:
        DataError: when the root is missing or holds no feature-set folder.
    """
    path = _check_root(root)
    sets = tuple(
        sorted(
            p.name
            for p in path.iterdir()
            if p.is_dir() and p.name != LABELS_FOLDER and not p.name.startswith(".")
            and "+" not in p.name  # '+' joins feature sets: such a folder cannot be chosen
        )
    )
    if not sets:
        raise DataError(f"{path}: no feature-set folder (expected <root>/<feature_set>/*.csv)")
    return sets


def _check_feature_sets(root: Path, feature_sets: Sequence[str]) -> tuple[str, ...]:
    sets = (feature_sets,) if isinstance(feature_sets, str) else tuple(feature_sets)
    if not sets:
        raise DataError(f"{root}: no feature set requested")
    if len(set(sets)) != len(sets):
        raise DataError(f"{root}: a feature set is requested twice in {'+'.join(sets)}")
    for s in sets:
        if s == LABELS_FOLDER or not (root / s).is_dir():
            try:
                available = ", ".join(list_feature_sets(root))
            except DataError:
                available = "none"
            plus = sorted(p.name for p in root.iterdir() if p.is_dir() and "+" in p.name)
            note = (f" (folders whose name contains '+' cannot be chosen, '+' joins feature "
                    f"sets: rename {', '.join(plus)})") if plus else ""
            raise DataError(
                f"{root / s}: feature set {s!r} not found; available: {available}{note}")
    return sets


def _check_partitions(partitions: Sequence[str], *, arg: str) -> tuple[str, ...]:
    parts = (partitions,) if isinstance(partitions, str) else tuple(partitions)
    for p in parts:
        if p not in PARTITIONS:
            raise ValueError(f"{arg}: expected partitions among {PARTITIONS}, got {p!r}")
    return parts


class _Reader:
    """State shared while reading one corpus: column names, attributes, the digest."""

    def __init__(self, root: Path, sets: tuple[str, ...]) -> None:
        self.root = root
        self.sets = sets
        self.scans = {s: scan_folder(root / s) for s in sets}
        labels_dir = root / LABELS_FOLDER
        self.labels_dir = labels_dir
        self.label_scan = scan_folder(labels_dir) if labels_dir.is_dir() else {}
        self.columns: dict[str, tuple[tuple[str, ...], Path]] = {}
        self.attributes: tuple[tuple[str, ...], Path] | None = None
        self.hasher = hashlib.sha256()
        for s in sets:
            self._hash(b"set", s.encode())

    def _hash(self, kind: bytes, data: bytes) -> None:
        # length-prefixed so that no two different inputs hash the same stream
        self.hasher.update(kind + len(data).to_bytes(8, "little") + data)

    def names(self, partition: str) -> list[str]:
        """Recording names of a partition, checked to be the same in every feature set."""
        per_set = {
            s: {n for n in self.scans[s] if partition_of(n) == partition} for s in self.sets
        }
        first = self.sets[0]
        for s in self.sets[1:]:
            missing = per_set[first] - per_set[s]
            extra = per_set[s] - per_set[first]
            if missing or extra:
                detail = []
                if missing:
                    detail.append(f"missing in {s}: {listing(missing)}")
                if extra:
                    detail.append(f"missing in {first}: {listing(extra)}")
                raise DataError(
                    f"{self.root / s}: {partition} recordings differ between feature sets "
                    f"{first} and {s} ({'; '.join(detail)})"
                )
        return sorted(per_set[first])

    def check_labels(self, partition: str, names: list[str]) -> None:
        labelled = {n for n in self.label_scan if partition_of(n) == partition}
        if not labelled:
            raise DataError(
                f"{self.labels_dir}: partition {partition} has {len(names)} recordings but no "
                f"label files (expected {self.labels_dir}/{names[0]}.csv ...)"
            )
        missing = set(names) - labelled
        extra = labelled - set(names)
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"no labels for {listing(missing)}")
            if extra:
                detail.append(f"labels without features: {listing(extra)}")
            raise DataError(
                f"{self.labels_dir}: {partition} recordings differ between features "
                f"({self.root / self.sets[0]}) and labels ({'; '.join(detail)})"
            )

    def _feature_table(self, s: str, name: str) -> Table:
        table = read_table(self.scans[s][name], what="feature")
        cols = table.column_names()
        if s not in self.columns:
            self.columns[s] = (cols, table.path)
        else:
            expected, ref = self.columns[s]
            if len(cols) != len(expected):
                raise DataError(
                    f"{table.path}: {len(cols)} feature columns; expected {len(expected)} as "
                    f"in {ref}"
                )
            if cols != expected:
                k = next(i for i, (a, b) in enumerate(zip(cols, expected, strict=True)) if a != b)
                raise DataError(
                    f"{table.path}: feature column {k + 3} is named {cols[k]!r}; expected "
                    f"{expected[k]!r} as in {ref} (headers must agree within a feature set)"
                )
        self._hash(b"file", table.raw)
        return table

    def _label_table(self, name: str) -> Table:
        table = read_table(self.label_scan[name], what="label")
        attrs = label_attributes(table)
        if self.attributes is None:
            self.attributes = (attrs, table.path)
        elif attrs != self.attributes[0]:
            raise DataError(
                f"{table.path}: label attribute columns {attrs} differ from "
                f"{self.attributes[0]} in {self.attributes[1]} (missing or renamed attribute "
                "column)"
            )
        self._hash(b"labels", table.raw)
        return table

    def recording(self, name: str, *, labels: bool) -> Recording:
        """Read, align and concatenate one recording."""
        self._hash(b"recording", name.encode())
        tables = [self._feature_table(s, name) for s in self.sets]
        label_table = self._label_table(name) if labels else None
        if label_table is not None:
            n = label_table.values.shape[0]
            for t in tables:
                if t.values.shape[0] < n:
                    raise DataError(
                        f"{t.path}: features shorter than labels: {t.values.shape[0]} rows, "
                        f"but {label_table.path} has {n}; expected at least as many feature "
                        "rows as label rows"
                    )
            timestamps = label_table.times
            y: np.ndarray | None = label_table.values.astype(np.float32)
        else:
            n = min(t.values.shape[0] for t in tables)
            timestamps = tables[0].times[:n].copy()
            y = None
        x = np.concatenate([t.values[:n] for t in tables], axis=1).astype(np.float32)
        if not np.isfinite(x).all():
            row, j = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise DataError(
                f"{self.root}: recording {name}: feature value at frame {row}, column {j} "
                "does not fit in float32; expected |value| < 3.4e38"
            )
        for arr in (timestamps, x, y):
            if arr is not None:
                arr.flags.writeable = False
        _, partition, culture = canonical_recording_name(name)
        return Recording(name, partition, culture, timestamps, x, y)

    def feature_columns(self) -> tuple[str, ...]:
        return tuple(f"{s}:{c}" for s in self.sets for c in self.columns[s][0])


def load_corpus(
    root: str | Path,
    feature_sets: Sequence[str],
    *,
    partitions: Sequence[str] = PARTITIONS,
    labelled: Sequence[str] = ("Train", "Devel"),
) -> Corpus:
    """Read the requested feature sets (and labels) of a corpus, validated and aligned.

    A partition in ``labelled`` must have recordings and a label file for each of them;
    any other partition may be absent (``()``) and is read without labels. Labelled
    partitions that are not in ``partitions`` are ignored. A feature file longer than its
    labels is truncated (real AVEC feature files are padded to 1768 frames); without
    labels, the feature sets of a recording are truncated to the shortest.

    Args:
        root: corpus root holding ``<feature_set>/`` folders and ``labels/``.
        feature_sets: folder names; their columns are concatenated in this order.
        partitions: partitions to read.
        labelled: partitions whose labels are read (and required).

    Returns:
        The corpus, recordings sorted by name within each partition.

    Raises:
        DataError: a missing root, feature-set folder, partition or label file, files
            that disagree, or any malformed file; the message names the path.
        ValueError: an unknown partition name.
    """
    path = _check_root(root)
    sets = _check_feature_sets(path, feature_sets)
    parts = _check_partitions(partitions, arg="partitions")
    with_labels = set(_check_partitions(labelled, arg="labelled"))
    reader = _Reader(path, sets)
    recordings: dict[str, tuple[Recording, ...]] = {}
    for p in parts:
        names = reader.names(p)
        wants_labels = p in with_labels
        if not names:
            if wants_labels:
                raise DataError(
                    f"{path / sets[0]}: no recordings for partition {p} (expected files like "
                    f"{p}_DE_01.csv); it is required because its labels are requested"
                )
            recordings[p] = ()
            continue
        if wants_labels:
            reader.check_labels(p, names)
        recordings[p] = tuple(reader.recording(n, labels=wants_labels) for n in names)
    if not reader.columns:
        raise DataError(
            f"{path}: no recordings for any of the partitions {', '.join(parts)} in "
            f"{', '.join(sets)}"
        )
    return Corpus(
        root=path,
        feature_sets=sets,
        feature_columns=reader.feature_columns(),
        attributes=reader.attributes[0] if reader.attributes else (),
        recordings=recordings,
        digest=reader.hasher.hexdigest(),
    )


def load_partition_features(
    root: str | Path,
    feature_sets: Sequence[str],
    partition: str,
    *,
    labels: bool = False,
) -> tuple[Recording, ...]:
    """Read one partition, by default without labels (predicting on new recordings).

    Args:
        root: corpus root.
        feature_sets: feature-set folders, concatenated in this order.
        partition: ``Train``, ``Devel`` or ``Test``.
        labels: also read (and require) the label files.

    Returns:
        The partition's recordings sorted by name.

    Raises:
        DataError: as :func:`load_corpus`; also when the partition has no recordings.
        ValueError: an unknown partition name.
    """
    path = _check_root(root)
    sets = _check_feature_sets(path, feature_sets)
    (part,) = _check_partitions((partition,), arg="partition")
    reader = _Reader(path, sets)
    names = reader.names(part)
    if not names:
        raise DataError(
            f"{path / sets[0]}: no recordings for partition {part} (expected files like "
            f"{part}_DE_01.csv)"
        )
    if labels:
        reader.check_labels(part, names)
    return tuple(reader.recording(n, labels=labels) for n in names)
