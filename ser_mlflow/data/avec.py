"""Read, validate and prepare an AVEC 2019 CES style corpus (DESIGN.md section 3).

Layout::

    <root>/<feature_set>/<Partition>_<Culture>_<NN>.csv   name;frameTime;f1;f2;...
    <root>/labels/<Partition>_<Culture>_<NN>.csv          name;timestamp;arousal;valence;liking

Everything a user can get wrong on disk raises :class:`DataError` whose message names the
full file (or folder) path, the field or column and what was expected, because a training
run that dies ten minutes in with a bare ``KeyError`` is the failure this module exists
to prevent. Files are parsed with pandas' C engine: the full corpus is about 130
recordings times 12 feature sets.

The module also holds the small array helpers every use case needs the same way:
zero post-padding with a mask, z-score standardisation fitted on training frames,
the one-frame annotator-delay shift and its inverse, and the AVEC prediction writer.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PARTITIONS",
    "LABELS_FOLDER",
    "Corpus",
    "DataError",
    "Recording",
    "Standardizer",
    "canonical_recording_name",
    "list_feature_sets",
    "load_corpus",
    "load_partition_features",
    "pad_sequences",
    "read_avec_csv",
    "shift_labels",
    "unshift_predictions",
    "write_avec_csv",
]

PARTITIONS: tuple[str, ...] = ("Train", "Devel", "Test")
LABELS_FOLDER = "labels"

_PARTITION_BY_LOWER = {p.lower(): p for p in PARTITIONS}
_NAME_RE = re.compile(r"^(?P<partition>[A-Za-z]+)_(?P<culture>[A-Za-z]+)_(?P<number>\d+)$")
_SEPARATORS = (";", ",")
_MAX_LISTED = 5
_STD_FLOOR = 1e-8


class DataError(ValueError):
    """Bad input data: the message names the file, the field and what was expected."""


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
# file names


def canonical_recording_name(stem: str, *, path: Path | None = None) -> tuple[str, str, str]:
    """Canonical ``<Partition>_<Culture>_<NN>`` for a file stem, with partition and culture.

    ``train_de_1`` and ``Train_DE_01`` are the same recording; making the name canonical
    is what lets the reader catch such duplicates instead of training on one twice.

    Args:
        stem: the file name without ``.csv``.
        path: the file, only to name it in an error.

    Returns:
        (canonical name, partition, culture).

    Raises:
        DataError: when the stem does not match the pattern or the partition is unknown.
    """
    where = str(path) if path is not None else repr(stem)
    m = _NAME_RE.match(stem)
    if m is None:
        raise DataError(
            f"{where}: file name does not match <Partition>_<Culture>_<NN>.csv "
            "(e.g. Train_DE_01.csv)"
        )
    partition = _PARTITION_BY_LOWER.get(m["partition"].lower())
    if partition is None:
        raise DataError(
            f"{where}: file name has partition {m['partition']!r}; expected one of "
            f"{', '.join(PARTITIONS)}"
        )
    culture = m["culture"].upper()
    return f"{partition}_{culture}_{int(m['number']):02d}", partition, culture


def _scan_folder(folder: Path) -> dict[str, Path]:
    """Canonical recording name -> file for every ``*.csv`` in a folder.

    Other files (README, hidden files) are ignored; a CSV with a bad name or two files
    that are the same recording is an error.
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".csv":
            continue
        if not path.is_file():
            if path.is_symlink():
                raise DataError(f"{path}: symbolic link that leads nowhere (a link loop or a "
                                "missing target); expected a CSV file")
            continue
        name, _, _ = canonical_recording_name(path.stem, path=path)
        if name in found:
            raise DataError(
                f"{path}: duplicate recording {name}: {found[name].name} and {path.name} in "
                f"{folder} are the same recording (names are compared as "
                "<Partition>_<CULTURE>_<number>)"
            )
        found[name] = path
    return found


def _partition_of(name: str) -> str:
    return name.split("_", 1)[0]


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


# ---------------------------------------------------------------------------------------
# one CSV file


@dataclass(frozen=True)
class _Table:
    """A parsed file: header names (None without header), time column, value columns."""

    path: Path
    raw: bytes
    header: tuple[str, ...] | None
    times: np.ndarray
    values: np.ndarray

    def column_names(self) -> tuple[str, ...]:
        """Names of the value columns (after name and time); ``f1``.. without header."""
        if self.header is not None:
            return self.header[2:]
        return tuple(f"f{i + 1}" for i in range(self.values.shape[1]))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _read_table(path: Path, *, what: str) -> _Table:
    """Parse one ``name<sep>time<sep>v1...`` file, validating it completely.

    Args:
        path: the file.
        what: ``feature`` or ``label``, for messages.

    Raises:
        DataError: empty file, unknown or mixed separator, fewer than 3 columns,
            ragged rows, non-numeric or non-finite values.
    """
    raw, body, first = _read_bytes(path, what)
    sep = _separator(path, body, first)
    fields = [f.strip() for f in first.split(sep)]
    _check_header(path, body, fields, what)
    has_header = not _is_number(fields[2].strip("'\""))
    header = tuple(f.strip("'\"") for f in fields) if has_header else None
    ncol = len(fields)
    frame = _parse_rows(path, body, sep, has_header, ncol, what)
    names = header or ("name", "time", *(f"f{i}" for i in range(1, ncol - 1)))
    first_data_line = 2 if has_header else 1
    names_column = frame.iloc[:, 0]
    values = _numeric_values(path, frame.iloc[:, 1:], names, first_data_line)
    _check_times(path, values[:, 0], names[1], first_data_line)
    _check_names(path, names_column, names[0], first_data_line)
    return _Table(path, raw, header, values[:, 0].copy(), values[:, 1:])


def _read_bytes(path: Path, what: str) -> tuple[bytes, bytes, str]:
    """The file's bytes, its body without a UTF-8 BOM and its first line as text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} file: {exc}") from None
    if not raw.strip():
        raise DataError(f"{path}: empty {what} file (expected a header and data rows)")
    body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    first_end = body.find(b"\n")
    first_bytes = body if first_end < 0 else body[:first_end]
    try:
        first = first_bytes.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise DataError(f"{path}: first line is not UTF-8 text") from None
    return raw, body, first


def _separator(path: Path, body: bytes, first: str) -> str:
    """The one separator of the file, ';' or ',', read from its first line."""
    present = [s for s in _SEPARATORS if s in first]
    if len(present) == 2:
        raise DataError(
            f"{path}: mixed separators in the first line (both ';' and ','); expected one"
        )
    if not present:
        hint = " (found tab characters)" if "\t" in first else ""
        raise DataError(
            f"{path}: wrong separator: expected ';' or ',' between fields in the first line{hint}"
        )
    sep = present[0]
    other = "," if sep == ";" else ";"
    bad = body.find(other.encode())
    if bad >= 0:
        raise DataError(
            f"{path}: mixed separators: line {_line_of(body, bad)} contains {other!r} but the "
            f"first line separates fields with {sep!r}"
        )
    return sep


def _check_header(path: Path, body: bytes, fields: list[str], what: str) -> None:
    """At least name, time and one value column; the whole body UTF-8."""
    if len(fields) < 3:
        expected = (
            "name;timestamp;<attribute>... (missing attribute column)"
            if what == "label"
            else "name;frameTime;<feature>..."
        )
        raise DataError(f"{path}: {len(fields)} column(s) in the first line; expected {expected}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(body, exc.start)
        column = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 text (byte 0x{body[exc.start]:02x} at "
            f"character {column}); expected UTF-8 (re-save the file as UTF-8)"
        ) from None


def _parse_rows(
    path: Path, body: bytes, sep: str, has_header: bool, ncol: int, what: str
) -> pd.DataFrame:
    """The data rows, each with as many fields as the first line."""
    try:
        frame = pd.read_csv(
            io.BytesIO(body),
            sep=sep,
            header=None,
            skiprows=1 if has_header else 0,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(
            f"{path}: rows have a different number of fields than the first line "
            f"({ncol}): {str(exc).strip()}"
        ) from None
    if frame.shape[0] == 0:
        raise DataError(f"{path}: empty {what} file: no data rows after the header")
    if frame.shape[1] != ncol:
        raise DataError(
            f"{path}: {frame.shape[1]} fields per row but {ncol} in the first line; expected "
            "the same number of fields on every row"
        )
    return frame


def _numeric_values(
    path: Path, frame: pd.DataFrame, names: Sequence[str], first_data_line: int
) -> np.ndarray:
    """The time and value columns as float64: numbers, finite, within float32's range."""
    for j, col in enumerate(frame.columns):
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        coerced = pd.to_numeric(series, errors="coerce")
        bad_rows = np.flatnonzero(coerced.isna().to_numpy() & series.notna().to_numpy())
        row = int(bad_rows[0]) if bad_rows.size else 0
        raise DataError(
            f"{path}: non-numeric value {series.iloc[row]!r} in column {names[j + 1]!r} "
            f"(column {j + 2}) at line {first_data_line + row}; expected numbers"
        )
    with np.errstate(all="ignore"):
        values = frame.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row, j = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(
            f"{path}: missing, NaN or infinite value {float(values[row, j])} in column "
            f"{names[j + 1]!r} (column {j + 2}) at line {first_data_line + row}; expected a "
            "finite number (a short row also leaves values missing)"
        )
    huge = np.abs(values) > _FLOAT32_MAX
    if huge.any():
        row, j = (int(i) for i in np.argwhere(huge)[0])
        raise DataError(
            f"{path}: value {float(values[row, j]):g} in column {names[j + 1]!r} (column "
            f"{j + 2}) at line {first_data_line + row} is out of range; expected |x| <= "
            f"{_FLOAT32_MAX:.3g} (the network computes in float32)"
        )
    return values


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_times(path: Path, times: np.ndarray, column: str, first_line: int) -> None:
    """One row per frame, in time order: a repeated or decreasing time is a broken file
    (rows pasted twice, files concatenated) that would silently misalign labels."""
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        what = "repeats" if steps[i - 1] == 0 else "goes back to"
        raise DataError(
            f"{path}: column {column!r} (column 2) {what} {times[i]:g} at line "
            f"{first_line + i} (line {first_line + i - 1}: {times[i - 1]:g}); expected strictly "
            "increasing times, one row per frame"
        )


def _check_names(path: Path, column: pd.Series, header: str, first_line: int) -> None:
    """The name column must name the file's own recording (a copied file keeps the name
    of the recording it came from)."""
    if pd.api.types.is_numeric_dtype(column):
        return
    try:
        expected = canonical_recording_name(path.stem)[0]
    except DataError:
        return
    text = column.astype(str).str.strip().str.strip("'\"")
    canon: dict[str, str | None] = {}
    for value in text.unique():
        try:
            canon[value] = canonical_recording_name(value)[0]
        except DataError:
            canon[value] = None
    bad = np.flatnonzero(text.map(canon).to_numpy() != expected)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{path}: column {header!r} (column 1) says {text.iloc[row]!r} at line "
            f"{first_line + row}; expected {expected} (the recording the file is named after)"
        )


def _label_attributes(table: _Table) -> tuple[str, ...]:
    if table.header is None:
        raise DataError(
            f"{table.path}: label file has no header; expected name;timestamp;<attribute>... "
            "(attribute names come from the header)"
        )
    return table.header[2:]


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
        self.scans = {s: _scan_folder(root / s) for s in sets}
        labels_dir = root / LABELS_FOLDER
        self.labels_dir = labels_dir
        self.label_scan = _scan_folder(labels_dir) if labels_dir.is_dir() else {}
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
            s: {n for n in self.scans[s] if _partition_of(n) == partition} for s in self.sets
        }
        first = self.sets[0]
        for s in self.sets[1:]:
            missing = per_set[first] - per_set[s]
            extra = per_set[s] - per_set[first]
            if missing or extra:
                detail = []
                if missing:
                    detail.append(f"missing in {s}: {_listing(missing)}")
                if extra:
                    detail.append(f"missing in {first}: {_listing(extra)}")
                raise DataError(
                    f"{self.root / s}: {partition} recordings differ between feature sets "
                    f"{first} and {s} ({'; '.join(detail)})"
                )
        return sorted(per_set[first])

    def check_labels(self, partition: str, names: list[str]) -> None:
        labelled = {n for n in self.label_scan if _partition_of(n) == partition}
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
                detail.append(f"no labels for {_listing(missing)}")
            if extra:
                detail.append(f"labels without features: {_listing(extra)}")
            raise DataError(
                f"{self.labels_dir}: {partition} recordings differ between features "
                f"({self.root / self.sets[0]}) and labels ({'; '.join(detail)})"
            )

    def _feature_table(self, s: str, name: str) -> _Table:
        table = _read_table(self.scans[s][name], what="feature")
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

    def _label_table(self, name: str) -> _Table:
        table = _read_table(self.label_scan[name], what="label")
        attrs = _label_attributes(table)
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


# ---------------------------------------------------------------------------------------
# arrays


class Standardizer:
    """Z-score standardisation fitted on the valid (unpadded) frames of training data.

    Fitting on Train only keeps development scores honest; fitting on unpadded frames
    keeps the zeros of padding out of the statistics. Columns whose standard deviation
    is below 1e-8 (constant) get a std of 1.0 so they map to zero instead of inf.
    Transform before padding: padded frames are zeros in the model's input space.

    Attributes:
        mean_: (F,) float64 column means.
        std_: (F,) float64 column standard deviations (population), floored.
    """

    mean_: np.ndarray
    std_: np.ndarray

    def fit(self, recordings: Sequence[Recording | np.ndarray]) -> Standardizer:
        """Learn column means and standard deviations.

        Args:
            recordings: training recordings (their ``features``) or (T, F) arrays.

        Returns:
            self.

        Raises:
            ValueError: no frames, arrays of different widths, or non-finite values.
        """
        arrays = [
            np.asarray(r.features if isinstance(r, Recording) else r, dtype=np.float64)
            for r in recordings
        ]
        if not arrays or any(a.ndim != 2 for a in arrays):
            raise ValueError("Standardizer.fit: expected one or more (T, F) feature arrays")
        widths = {a.shape[1] for a in arrays}
        if len(widths) != 1:
            raise ValueError(f"Standardizer.fit: arrays differ in width: {sorted(widths)}")
        x = np.concatenate(arrays, axis=0)
        if x.shape[0] == 0:
            raise ValueError("Standardizer.fit: zero frames to fit on")
        if not np.isfinite(x).all():
            raise ValueError("Standardizer.fit: features contain NaN or inf")
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.std_ = np.where(std < _STD_FLOOR, 1.0, std)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ValueError("Standardizer is not fitted: call fit() or from_dict() first")

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardise (..., F) features.

        Returns:
            float32 array of the same shape.

        Raises:
            ValueError: when not fitted or the last dimension is not F.
        """
        self._check_fitted()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.mean_.shape[0]:
            raise ValueError(
                f"Standardizer.transform: expected (..., {self.mean_.shape[0]}) features, "
                f"got shape {x.shape}"
            )
        return ((x - self.mean_) / self.std_).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (``mean``, ``std`` lists), for logging with the model."""
        self._check_fitted()
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: missing keys, lengths that differ, non-finite values or std <= 0.
        """
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"Standardizer.from_dict: expected 'mean' and 'std' lists: {exc}"
            ) from None
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
            raise ValueError(
                f"Standardizer.from_dict: mean and std must be equal-length lists, got "
                f"{mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("Standardizer.from_dict: expected finite mean and positive std")
        out = cls()
        out.mean_, out.std_ = mean, std
        return out


def pad_sequences(
    arrays: Sequence[np.ndarray], length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zero post-padding to a common length, with a mask of real frames.

    Post-padding matters: a forward LSTM's outputs at real frames never see the padded
    tail, so masking the loss and metrics is all correctness needs (DESIGN.md section 7).

    Args:
        arrays: (T_i, D) arrays (or (T_i,) arrays, read as D = 1).
        length: padded length L; default the longest T_i.

    Returns:
        (N, L, D) float32 padded array and (N, L) bool mask, True on real frames.

    Raises:
        ValueError: no arrays, differing D, or an array longer than ``length``.
    """
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("pad_sequences: expected at least one array")
    arrs = [a[:, None] if a.ndim == 1 else a for a in arrs]
    if any(a.ndim != 2 for a in arrs):
        raise ValueError("pad_sequences: expected (T, D) or (T,) arrays")
    dims = {a.shape[1] for a in arrs}
    if len(dims) != 1:
        raise ValueError(f"pad_sequences: arrays differ in width D: {sorted(dims)}")
    longest = max(a.shape[0] for a in arrs)
    if length is None:
        length = longest
    elif length < 0:
        raise ValueError(f"pad_sequences: length must be >= 0, got {length}")
    elif longest > length:
        raise ValueError(
            f"pad_sequences: an array has {longest} frames, longer than length={length}"
        )
    out = np.zeros((len(arrs), length, dims.pop()), dtype=np.float32)
    mask = np.zeros((len(arrs), length), dtype=bool)
    for i, a in enumerate(arrs):
        out[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return out, mask


def _check_shift(n: int, fn: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"{fn}: expected a shift of 0 or more frames, got {n!r}")
    return int(n)


def shift_labels(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift training labels ``n`` frames to the front: ``y'[t] = y[t + n]``.

    Annotators react about 0.1 s late, so the label at t + n describes the features at t.
    The last n frames have no label to take: they repeat the last label and are marked
    invalid so the loss ignores them.

    Args:
        labels: (T, A) or (T,) labels.
        n: frames to shift (0 = identity).

    Returns:
        (shifted labels, same shape and dtype; valid (T,) bool, False on the last n).

    Raises:
        ValueError: negative or non-integer n.
    """
    n = _check_shift(n, "shift_labels")
    y = np.asarray(labels)
    t = y.shape[0]
    valid = np.zeros(t, dtype=bool)
    out = y.copy()
    if t == 0 or n == 0:
        valid[:] = True
        return out, valid
    keep = max(t - n, 0)
    out[:keep] = y[n:]
    out[keep:] = y[-1]
    valid[:keep] = True
    return out, valid


def unshift_predictions(pred: np.ndarray, n: int) -> np.ndarray:
    """Undo :func:`shift_labels` on model output: ``out[t] = pred[t - n]``.

    The first n frames have no earlier prediction and repeat ``pred[0]``.

    Args:
        pred: (T, A) or (T,) predictions.
        n: frames the training labels were shifted (0 = identity).

    Returns:
        Array of the same shape and dtype.

    Raises:
        ValueError: negative or non-integer n.
    """
    n = _check_shift(n, "unshift_predictions")
    p = np.asarray(pred)
    out = p.copy()
    t = p.shape[0]
    if t == 0 or n == 0:
        return out
    keep = max(t - n, 0)
    out[t - keep :] = p[:keep]
    out[: t - keep] = p[0]
    return out


# ---------------------------------------------------------------------------------------
# AVEC prediction / label files


def write_avec_csv(
    path: str | Path,
    name: str,
    timestamps: np.ndarray,
    values: np.ndarray,
    attributes: Sequence[str],
) -> None:
    """Write one recording in the AVEC label format.

    ``name;timestamp;<attributes>`` header, then ``'<name>';%.6f;%.6f...`` rows, exactly
    what the AVEC scoring scripts and :func:`read_avec_csv` expect.

    Args:
        path: output file; parent folders are created.
        name: recording name (written quoted with single quotes).
        timestamps: (T,) seconds.
        values: (T, A) values, or (T,) when A = 1.
        attributes: A attribute names for the header.

    Raises:
        ValueError: shapes that disagree, non-finite values, or names containing a
            separator or quote.
    """
    attrs = tuple(attributes)
    ts = np.asarray(timestamps, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    if ts.ndim != 1 or vals.ndim != 2 or vals.shape != (ts.shape[0], len(attrs)):
        raise ValueError(
            f"write_avec_csv({path}): expected timestamps (T,) and values (T, {len(attrs)}), "
            f"got {ts.shape} and {np.asarray(values).shape}"
        )
    if not attrs:
        raise ValueError(f"write_avec_csv({path}): expected at least one attribute")
    for text in (name, *attrs):
        if not text or any(c in text for c in ";,'\"\n\r\t"):
            raise ValueError(
                f"write_avec_csv({path}): name or attribute {text!r} is empty or contains a "
                "separator, quote or newline"
            )
    if not (np.isfinite(ts).all() and np.isfinite(vals).all()):
        raise ValueError(f"write_avec_csv({path}): timestamps or values contain NaN or inf")
    row = f"'{name}';%.6f" + ";%.6f" * len(attrs) + "\n"
    lines = [row % tuple(r) for r in np.column_stack([ts, vals]).tolist()]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("name;timestamp;" + ";".join(attrs) + "\n")
        fh.write("".join(lines))


def read_avec_csv(
    path: str | Path, *, attributes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read one AVEC label or prediction file.

    Args:
        path: the file.
        attributes: when given, these columns are returned in this order (the file may
            hold more); a file without header must then have exactly these columns.
            Without it, the header is required and gives the names.

    Returns:
        (timestamps (T,) float64, values (T, A) float64, attribute names).

    Raises:
        DataError: as the label reader (names the file), or a requested attribute missing.
    """
    p = Path(path).expanduser().absolute()
    if not p.is_file():
        raise DataError(f"{p}: file does not exist")
    table = _read_table(p, what="label")
    if attributes is None:
        return table.times, table.values, _label_attributes(table)
    wanted = tuple(attributes)
    if table.header is None:
        if table.values.shape[1] != len(wanted):
            raise DataError(
                f"{p}: {table.values.shape[1]} value columns and no header; expected "
                f"{len(wanted)} ({', '.join(wanted)})"
            )
        return table.times, table.values, wanted
    have = table.header[2:]
    missing = [a for a in wanted if a not in have]
    if missing:
        raise DataError(
            f"{p}: missing attribute column(s) {', '.join(missing)}; the header has "
            f"{', '.join(have)}"
        )
    idx = [have.index(a) for a in wanted]
    return table.times, table.values[:, idx], wanted
