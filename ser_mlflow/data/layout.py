"""The AVEC 2019 CES layout on disk: partitions, the labels folder, recording names.

Layout::

    <root>/<feature_set>/<Partition>_<Culture>_<NN>.csv   name;frameTime;f1;f2;...
    <root>/labels/<Partition>_<Culture>_<NN>.csv          name;timestamp;arousal;valence;liking

Everything a user can get wrong on disk raises :class:`DataError` whose message names the
full file (or folder) path, the field or column and what was expected, because a training
run that dies ten minutes in with a bare ``KeyError`` is the failure this package exists
to prevent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

PARTITIONS: tuple[str, ...] = ("Train", "Devel", "Test")
LABELS_FOLDER = "labels"

_PARTITION_BY_LOWER = {p.lower(): p for p in PARTITIONS}
_NAME_RE = re.compile(r"^(?P<partition>[A-Za-z]+)_(?P<culture>[A-Za-z]+)_(?P<number>\d+)$")
SEPARATORS = (";", ",")
_MAX_LISTED = 5


class DataError(ValueError):
    """Bad input data: the message names the file, the field and what was expected."""


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


def scan_folder(folder: Path) -> dict[str, Path]:
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


def partition_of(name: str) -> str:
    return name.split("_", 1)[0]


def listing(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")
