"""Reader, validation, array helpers and the AVEC CSV format of ser_mlflow.data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser_mlflow.data import (
    PARTITIONS,
    DataError,
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
from ser_mlflow.scoring.metrics import ccc

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "avec2019_ces_devel"
ATTRS = ("arousal", "valence", "liking")


# ---------------------------------------------------------------------------------------
# a small hand-made corpus


def _feature_text(
    name: str, values: np.ndarray, *, sep: str = ";", header: tuple[str, ...] | None = None
) -> str:
    lines = []
    if header is not None:
        lines.append(sep.join(("name", "frameTime", *header)))
    for t, row in enumerate(values):
        lines.append(sep.join([f"'{name}'", f"{t * 0.1:.1f}", *(repr(float(v)) for v in row)]))
    return "\n".join(lines) + "\n"


def _values(name: str, set_index: int, frames: int, dim: int) -> np.ndarray:
    """Distinct, reproducible values per recording and set (so alignment is checkable)."""
    seed = sum(map(ord, name)) * 10 + set_index
    return np.random.default_rng(seed).normal(size=(frames, dim)).round(4)


def make_corpus(
    root: Path,
    *,
    sets: dict[str, int] | None = None,
    counts: dict[str, int] | None = None,
    frames: int = 6,
    labelled: tuple[str, ...] = ("Train", "Devel"),
    header: bool = True,
) -> Path:
    """Write ``root/<set>/<Partition>_DE_<NN>.csv`` and ``root/labels/`` files."""
    sets = sets if sets is not None else {"aa": 3, "bb": 2}
    counts = counts if counts is not None else {"Train": 2, "Devel": 2, "Test": 1}
    for k, (s, dim) in enumerate(sets.items()):
        (root / s).mkdir(parents=True)
        cols = tuple(f"{s}_c{i}" for i in range(dim)) if header else None
        for p, n in counts.items():
            for i in range(1, n + 1):
                name = f"{p}_DE_{i:02d}"
                text = _feature_text(name, _values(name, k, frames, dim), header=cols)
                (root / s / f"{name}.csv").write_text(text)
    for p, n in counts.items():
        if p not in labelled:
            continue
        for i in range(1, n + 1):
            name = f"{p}_DE_{i:02d}"
            y = _values(name, 99, frames, 3) / 10
            write_avec_csv(
                root / "labels" / f"{name}.csv", name, np.arange(frames) * 0.1, y, ATTRS
            )
    return root


@pytest.fixture
def corpus_root(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


# ---------------------------------------------------------------------------------------
# reading


def test_load_corpus_reads_aligned_recordings(corpus_root: Path) -> None:
    corpus = load_corpus(corpus_root, ["bb", "aa"])
    assert corpus.feature_sets == ("bb", "aa")
    assert corpus.feature_columns == ("bb:bb_c0", "bb:bb_c1", "aa:aa_c0", "aa:aa_c1", "aa:aa_c2")
    assert corpus.n_features == 5
    assert corpus.attributes == ATTRS
    assert set(corpus.recordings) == set(PARTITIONS)
    train = corpus.partition("Train")
    assert [r.name for r in train] == ["Train_DE_01", "Train_DE_02"]
    rec = train[1]
    assert (rec.partition, rec.culture, rec.n_frames) == ("Train", "DE", 6)
    assert rec.features.dtype == np.float32 and rec.features.shape == (6, 5)
    expected = np.concatenate([_values(rec.name, 1, 6, 2), _values(rec.name, 0, 6, 3)], axis=1)
    np.testing.assert_allclose(rec.features, expected, rtol=1e-6)
    assert rec.labels is not None and rec.labels.dtype == np.float32
    np.testing.assert_allclose(rec.labels, _values(rec.name, 99, 6, 3) / 10, atol=1e-6)
    np.testing.assert_allclose(rec.timestamps, np.arange(6) * 0.1)
    assert not rec.features.flags.writeable  # a shared corpus cannot be changed in place
    (test_rec,) = corpus.partition("Test")
    assert test_rec.labels is None and test_rec.features.shape == (6, 5)


def test_partitions_absent_and_not_loaded(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", counts={"Train": 1, "Devel": 1})
    corpus = load_corpus(root, ["aa"])
    assert corpus.partition("Test") == ()
    only_devel = load_corpus(root, ["aa"], partitions=("Devel",))
    assert list(only_devel.recordings) == ["Devel"]
    with pytest.raises(ValueError, match="not loaded"):
        only_devel.partition("Train")
    with pytest.raises(ValueError, match="partitions"):
        load_corpus(root, ["aa"], partitions=("Dev",))
    unlabelled = load_corpus(root, ["aa"], labelled=())
    assert unlabelled.attributes == ()
    assert all(r.labels is None for p in PARTITIONS for r in unlabelled.partition(p))


def test_headerless_comma_files_and_canonical_names(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "xx").mkdir(parents=True)
    for stem, n in (("train_de_1", 4), ("Devel_hu_02", 3)):
        text = _feature_text(stem, np.arange(n * 2, dtype=float).reshape(n, 2), sep=",")
        (root / "xx" / f"{stem}.csv").write_text(text)
    (root / "xx" / "README.md").write_text("not a recording")
    corpus = load_corpus(root, ["xx"], labelled=())
    assert corpus.feature_columns == ("xx:f1", "xx:f2")
    (rec,) = corpus.partition("Train")
    assert (rec.name, rec.culture) == ("Train_DE_01", "DE")
    assert corpus.partition("Devel")[0].name == "Devel_HU_02"
    np.testing.assert_allclose(rec.timestamps, [0.0, 0.1, 0.2, 0.3])
    assert canonical_recording_name("TEST_de_007") == ("Test_DE_07", "Test", "DE")


def test_longer_features_are_truncated(corpus_root: Path) -> None:
    # real AVEC feature files are padded to 1768 frames: truncate to the labels
    path = corpus_root / "aa" / "Train_DE_01.csv"
    longer = _values("Train_DE_01", 0, 9, 3)
    path.write_text(_feature_text("Train_DE_01", longer, header=("aa_c0", "aa_c1", "aa_c2")))
    rec = load_corpus(corpus_root, ["aa", "bb"]).partition("Train")[0]
    assert rec.features.shape == (6, 5)
    np.testing.assert_allclose(rec.features[:, :3], longer[:6], rtol=1e-6)


def test_without_labels_truncates_to_shortest(corpus_root: Path) -> None:
    path = corpus_root / "bb" / "Test_DE_01.csv"
    path.write_text(_feature_text("Test_DE_01", np.ones((4, 2)), header=("bb_c0", "bb_c1")))
    (rec,) = load_partition_features(corpus_root, ["aa", "bb"], "Test")
    assert rec.labels is None and rec.features.shape == (4, 5)
    np.testing.assert_allclose(rec.timestamps, np.arange(4) * 0.1)
    devel = load_partition_features(corpus_root, ["aa"], "Devel", labels=True)
    assert all(r.labels is not None for r in devel)


def test_digest_tracks_content_not_location(corpus_root: Path, tmp_path: Path) -> None:
    first = load_corpus(corpus_root, ["aa", "bb"]).digest
    assert first == load_corpus(corpus_root, ["aa", "bb"]).digest
    copy = shutil.copytree(corpus_root, tmp_path / "elsewhere")
    assert load_corpus(copy, ["aa", "bb"]).digest == first
    assert load_corpus(corpus_root, ["bb", "aa"]).digest != first
    assert load_corpus(corpus_root, ["aa", "bb"], labelled=("Train",)).digest != first
    label = copy / "labels" / "Devel_DE_02.csv"
    label.write_text(label.read_text().rstrip("\n") + "1\n")  # one label value changes
    assert load_corpus(copy, ["aa", "bb"]).digest != first


def test_list_feature_sets(corpus_root: Path) -> None:
    (corpus_root / ".hidden").mkdir()
    assert list_feature_sets(corpus_root) == ("aa", "bb")


# ---------------------------------------------------------------------------------------
# every bad input: one table


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _replace_line(path: Path, index: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = line
    path.write_text("\n".join(lines) + "\n")


Setup = Callable[[Path], Path]  # mutates the corpus, returns the path the error must name


def _missing_root(root: Path) -> Path:
    shutil.rmtree(root)
    return root


def _missing_set(root: Path) -> Path:
    shutil.rmtree(root / "bb")
    return root / "bb"


def _no_devel(root: Path) -> Path:
    for f in (*root.glob("*/Devel_*.csv"),):
        f.unlink()
    return root / "aa"


def _set_mismatch(root: Path) -> Path:
    (root / "bb" / "Train_DE_02.csv").unlink()
    return root / "bb"


def _label_mismatch(root: Path) -> Path:
    (root / "labels" / "Train_DE_02.csv").unlink()
    return root / "labels"


def _feature_nan(root: Path) -> Path:
    path = root / "aa" / "Train_DE_01.csv"
    _replace_line(path, 3, "'Train_DE_01';0.2;1.0;nan;3.0")
    return path


def _label_inf(root: Path) -> Path:
    path = root / "labels" / "Devel_DE_01.csv"
    _replace_line(path, 2, "'Devel_DE_01';0.100000;0.1;inf;0.2")
    return path


def _non_numeric(root: Path) -> Path:
    path = root / "bb" / "Devel_DE_02.csv"
    _replace_line(path, 4, "'Devel_DE_02';0.3;1.5;abc")
    return path


def _empty_file(root: Path) -> Path:
    path = root / "aa" / "Train_DE_02.csv"
    path.write_text("")
    return path


def _header_only(root: Path) -> Path:
    path = root / "aa" / "Train_DE_02.csv"
    path.write_text("name;frameTime;aa_c0;aa_c1;aa_c2\n")
    return path


def _tab_separator(root: Path) -> Path:
    path = root / "bb" / "Train_DE_01.csv"
    path.write_text(path.read_text().replace(";", "\t"))
    return path


def _mixed_separator(root: Path) -> Path:
    path = root / "bb" / "Train_DE_01.csv"
    _replace_line(path, 2, "'Train_DE_01',0.1,1.0,2.0")
    return path


def _mixed_in_first_line(root: Path) -> Path:
    path = root / "bb" / "Train_DE_01.csv"
    _replace_line(path, 0, "name;frameTime,bb_c0;bb_c1")
    return path


def _ragged_row(root: Path) -> Path:
    path = root / "bb" / "Train_DE_01.csv"
    _replace_line(path, 2, "'Train_DE_01';0.1;1.0;2.0;3.0")
    return path


def _two_label_columns(root: Path) -> Path:
    path = root / "labels" / "Train_DE_01.csv"
    _write(path, "name;timestamp\n" + "".join(f"'Train_DE_01';{t / 10}\n" for t in range(6)))
    return path


def _renamed_attribute(root: Path) -> Path:
    path = root / "labels" / "Train_DE_02.csv"
    _replace_line(path, 0, "name;timestamp;arousal;valence;likeability")
    return path


def _dropped_attribute(root: Path) -> Path:
    path = root / "labels" / "Devel_DE_01.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.rsplit(";", 1)[0] for line in lines) + "\n")
    return path


def _label_without_header(root: Path) -> Path:
    path = root / "labels" / "Train_DE_01.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    return path


def _short_features(root: Path) -> Path:
    path = root / "bb" / "Devel_DE_01.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    return path


def _header_differs(root: Path) -> Path:
    path = root / "bb" / "Train_DE_02.csv"
    _replace_line(path, 0, "name;frameTime;bb_c0;other")
    return path


def _width_differs(root: Path) -> Path:
    path = root / "bb" / "Train_DE_02.csv"
    path.write_text(_feature_text("Train_DE_02", np.ones((6, 3)), header=("x", "y", "z")))
    return path


def _duplicate_number(root: Path) -> Path:
    path = root / "aa" / "Train_DE_1.csv"
    shutil.copy(root / "aa" / "Train_DE_01.csv", path)
    return path


def _duplicate_case(root: Path) -> Path:
    path = root / "aa" / "train_DE_01.csv"
    shutil.copy(root / "aa" / "Train_DE_01.csv", path)
    return path


def _bad_file_name(root: Path) -> Path:
    path = root / "aa" / "session3.csv"
    shutil.copy(root / "aa" / "Train_DE_01.csv", path)
    return path


def _bad_partition(root: Path) -> Path:
    path = root / "aa" / "Dev_DE_01.csv"
    shutil.copy(root / "aa" / "Train_DE_01.csv", path)
    return path


def _no_devel_labels(root: Path) -> Path:
    for f in (root / "labels").glob("Devel_*.csv"):
        f.unlink()
    return root / "labels"


def _load(root: Path) -> Any:
    return load_corpus(root, ["aa", "bb"])


def _load_test_features(root: Path) -> Any:
    return load_partition_features(root, ["aa"], "Test")


def _read_missing_attribute(root: Path) -> Any:
    return read_avec_csv(root / "labels" / "Train_DE_01.csv", attributes=("arousal", "dominance"))


def _no_test(root: Path) -> Path:
    for f in root.glob("*/Test_*.csv"):
        f.unlink()
    return root / "aa"


ERROR_CASES: list[tuple[str, Setup, Callable[[Path], Any], str]] = [
    ("missing root", _missing_root, _load, r"data root does not exist"),
    ("missing feature set", _missing_set, _load, r"feature set 'bb' not found; available: aa"),
    (
        "no recordings in required partition",
        _no_devel,
        _load,
        r"no recordings for partition Devel",
    ),
    ("recordings differ between sets", _set_mismatch, _load, r"missing in bb: Train_DE_02"),
    ("recordings differ from labels", _label_mismatch, _load, r"no labels for Train_DE_02"),
    ("NaN in features", _feature_nan, _load, r"NaN.*column 'aa_c1' \(column 4\) at line 4"),
    ("inf in labels", _label_inf, _load, r"infinite value inf in column 'valence'.*line 3"),
    ("non-numeric column", _non_numeric, _load, r"non-numeric value 'abc' in column 'bb_c1'"),
    ("empty file", _empty_file, _load, r"empty feature file"),
    ("header only", _header_only, _load, r"empty feature file: no data rows"),
    ("tab separator", _tab_separator, _load, r"wrong separator.*tab"),
    ("mixed separators", _mixed_separator, _load, r"mixed separators: line 3 contains ','"),
    ("mixed in first line", _mixed_in_first_line, _load, r"mixed separators in the first line"),
    ("ragged row", _ragged_row, _load, r"different number of fields"),
    ("label with 2 columns", _two_label_columns, _load, r"missing attribute column"),
    ("renamed attribute", _renamed_attribute, _load, r"'likeability'.*differ from"),
    ("dropped attribute", _dropped_attribute, _load, r"\('arousal', 'valence'\) differ from"),
    ("label without header", _label_without_header, _load, r"label file has no header"),
    ("features shorter than labels", _short_features, _load, r"features shorter than labels"),
    ("header differs in a set", _header_differs, _load, r"named 'other'; expected 'bb_c1'"),
    ("width differs in a set", _width_differs, _load, r"3 feature columns; expected 2"),
    ("duplicate by number", _duplicate_number, _load, r"duplicate recording Train_DE_01"),
    ("duplicate by case", _duplicate_case, _load, r"duplicate recording Train_DE_01"),
    ("bad file name", _bad_file_name, _load, r"does not match <Partition>_<Culture>_<NN>"),
    ("bad partition", _bad_partition, _load, r"partition 'Dev'; expected one of"),
    ("labelled without labels", _no_devel_labels, _load, r"Devel has 2 recordings but no label"),
    ("no test to predict", _no_test, _load_test_features, r"no recordings for partition Test"),
    ("attribute not in file", lambda r: r / "labels", _read_missing_attribute, r"dominance"),
]


@pytest.mark.parametrize(
    ("setup", "call", "pattern"),
    [pytest.param(s, c, p, id=i) for i, s, c, p in ERROR_CASES],
)
def test_bad_input_raises_data_error_naming_the_file(
    corpus_root: Path, setup: Setup, call: Callable[[Path], Any], pattern: str
) -> None:
    named = setup(corpus_root)
    with pytest.raises(DataError, match=pattern) as info:
        call(corpus_root)
    assert str(named) in str(info.value)


# ---------------------------------------------------------------------------------------
# array helpers


def test_standardizer_fits_train_frames_and_round_trips(corpus_root: Path) -> None:
    train = load_corpus(corpus_root, ["aa"]).partition("Train")
    std = Standardizer().fit(train)
    frames = np.concatenate([r.features for r in train]).astype(np.float64)
    np.testing.assert_allclose(std.mean_, frames.mean(axis=0))
    np.testing.assert_allclose(std.std_, frames.std(axis=0))
    z = np.concatenate([std.transform(r.features) for r in train])
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-5)
    again = Standardizer.from_dict(json.loads(json.dumps(std.to_dict())))
    np.testing.assert_array_equal(again.transform(frames), std.transform(frames))


def test_standardizer_constant_column_and_errors() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    std = Standardizer().fit([x])
    np.testing.assert_array_equal(std.std_, [1.0, 1.0])
    np.testing.assert_array_equal(std.transform(x), [[-1.0, 0.0], [1.0, 0.0]])
    assert std.transform(np.zeros((2, 3, 2))).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().transform(x)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\)"):
        std.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="zero frames"):
        Standardizer().fit([np.zeros((0, 2))])
    with pytest.raises(ValueError, match="positive std"):
        Standardizer.from_dict({"mean": [0.0], "std": [0.0]})


def test_pad_sequences() -> None:
    a, b = np.ones((3, 2)), np.full((1, 2), 2.0)
    x, mask = pad_sequences([a, b])
    assert x.shape == (2, 3, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(mask, [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(x[1], [[2, 2], [0, 0], [0, 0]])
    x, mask = pad_sequences([np.arange(2.0)], length=4)
    assert x.shape == (1, 4, 1) and mask.sum() == 2
    with pytest.raises(ValueError, match="longer than length=2"):
        pad_sequences([a], length=2)
    with pytest.raises(ValueError, match="differ in width"):
        pad_sequences([a, np.ones((2, 3))])


def test_shift_and_unshift() -> None:
    y = np.arange(10.0).reshape(5, 2)
    same, valid = shift_labels(y, 0)
    np.testing.assert_array_equal(same, y)
    assert valid.all()
    shifted, valid = shift_labels(y, 1)
    np.testing.assert_array_equal(shifted[:4], y[1:])  # y'[t] = y[t + 1]
    np.testing.assert_array_equal(shifted[4], y[4])
    np.testing.assert_array_equal(valid, [True, True, True, True, False])
    back = unshift_predictions(shifted, 1)
    np.testing.assert_array_equal(back[1:], y[1:])  # out[t] = pred[t - 1]
    np.testing.assert_array_equal(back[0], shifted[0])
    np.testing.assert_array_equal(unshift_predictions(y, 0), y)
    all_gone, valid = shift_labels(y, 7)
    assert not valid.any() and (all_gone == y[-1]).all()
    np.testing.assert_array_equal(unshift_predictions(y[:, 0], 2), [0, 0, 0, 2, 4])
    with pytest.raises(ValueError, match="0 or more"):
        shift_labels(y, -1)


# ---------------------------------------------------------------------------------------
# AVEC files


def test_write_avec_csv_exact_format(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "Devel_DE_01.csv"
    values = np.array([[0.1, -0.25, 1.0], [0.0, 0.5, -1e-9]], dtype=np.float32)
    write_avec_csv(path, "Devel_DE_01", np.array([0.0, 0.1]), values, ATTRS)
    assert path.read_text() == (
        "name;timestamp;arousal;valence;liking\n"
        "'Devel_DE_01';0.000000;0.100000;-0.250000;1.000000\n"
        "'Devel_DE_01';0.100000;0.000000;0.500000;-0.000000\n"
    )
    ts, vals, attrs = read_avec_csv(path)
    assert attrs == ATTRS and vals.dtype == np.float64
    np.testing.assert_allclose(vals, values, atol=1e-6)
    np.testing.assert_allclose(ts, [0.0, 0.1])
    _, picked, names = read_avec_csv(path, attributes=["liking", "arousal"])
    assert names == ("liking", "arousal")
    np.testing.assert_allclose(picked[:, 0], values[:, 2], atol=1e-6)
    with pytest.raises(ValueError, match=r"values \(T, 3\)"):
        write_avec_csv(path, "x", np.zeros(2), np.zeros((2, 2)), ATTRS)
    with pytest.raises(ValueError, match="NaN"):
        write_avec_csv(path, "x", np.zeros(1), np.full((1, 3), np.nan), ATTRS)


@pytest.mark.usefixtures("shared_data")  # absent: skip; under CI: fail
def test_real_devel_labels_and_padded_baseline_predictions(tmp_path: Path) -> None:
    """Real AVEC files: labels, and baseline predictions (1768 rows) read as a feature set."""
    ts, vals, attrs = read_avec_csv(REAL / "labels" / "Devel_DE_01.csv")
    assert attrs == ATTRS and vals.shape == (ts.shape[0], 3) and ts[1] == pytest.approx(0.1)
    root = tmp_path / "real"
    root.mkdir()
    (root / "labels").symlink_to(REAL / "labels")
    (root / "visual-vgg").symlink_to(REAL / "predictions" / "visual-vgg")
    corpus = load_corpus(root, ["visual-vgg"], partitions=("Devel",), labelled=("Devel",))
    devel = corpus.partition("Devel")
    assert len(devel) == 28 and corpus.attributes == ATTRS
    assert corpus.feature_columns == tuple(f"visual-vgg:{a}" for a in ATTRS)
    assert sum(r.n_frames for r in devel) == 40032
    pred = np.concatenate([r.features for r in devel])
    gold = np.concatenate([r.labels for r in devel if r.labels is not None])
    # the README's published devel CCC for this system: 0.493 / 0.505 / 0.037
    scores = [ccc(pred[:, k], gold[:, k]) for k in range(3)]
    np.testing.assert_allclose(scores, [0.493, 0.505, 0.037], atol=0.0015)
