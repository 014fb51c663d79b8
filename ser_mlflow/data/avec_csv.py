"""One AVEC CSV file (``name;time;v1...``): read with complete validation, and write.

Files are parsed with pandas' C engine: the full corpus is about 130 recordings times 12
feature sets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ser_mlflow.data.layout import SEPARATORS, DataError, canonical_recording_name

# ---------------------------------------------------------------------------------------
# one CSV file


@dataclass(frozen=True)
class Table:
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


def read_table(path: Path, *, what: str) -> Table:
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
    return Table(path, raw, header, values[:, 0].copy(), values[:, 1:])


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
    present = [s for s in SEPARATORS if s in first]
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


def label_attributes(table: Table) -> tuple[str, ...]:
    if table.header is None:
        raise DataError(
            f"{table.path}: label file has no header; expected name;timestamp;<attribute>... "
            "(attribute names come from the header)"
        )
    return table.header[2:]


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
    table = read_table(p, what="label")
    if attributes is None:
        return table.times, table.values, label_attributes(table)
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
