"""From a recording to emotions: `extract` on real speech, and `predict --audio`.

The speech is synthesised with Debian's espeak-ng (a real voice signal: voiced and
unvoiced stretches, pauses), skipped without it except in CI (`.ci/run` installs it).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ser_mlflow.cli import main
from ser_mlflow.data import load_corpus, read_avec_csv
from ser_mlflow.data.extract import (
    COLUMNS,
    EGEMAPS_COLUMNS,
    EGEMAPS_FUNC_COLUMNS,
    EXTRACTABLE,
    MFCC_COLUMNS,
    _block_means,
    _window_mean_std,
)

TEXTS = {
    "Devel_DE_01.wav": "Good morning. I have been waiting for this news all week, and now it is "
    "finally here. I am so glad, really, truly glad.",
    "raw-talk.wav": "Honestly, I do not know what to think about it. Maybe tomorrow will be a "
    "better day for all of us.",
}


def _require_espeak() -> str:
    found = shutil.which("espeak-ng")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("espeak-ng is missing in CI: .ci/run installs it (apt-get install espeak-ng)")
    pytest.skip("espeak-ng not installed (Debian: apt-get install -y espeak-ng); CI fails here")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two spoken recordings: an AVEC-named 22.05 kHz WAV, and a stereo 44.1 kHz FLAC."""
    import audresample
    import soundfile

    espeak = _require_espeak()
    folder = tmp_path_factory.mktemp("speech")
    for name, text in TEXTS.items():
        subprocess.run([espeak, "-w", str(folder / name), text], check=True, timeout=60)
    x, sr = soundfile.read(str(folder / "raw-talk.wav"), dtype="float32")
    y = audresample.resample(x, sr, 44100)[0]
    soundfile.write(str(folder / "my-talk.flac"), np.column_stack([y, 0.5 * y]), 44100)
    (folder / "raw-talk.wav").unlink()
    return folder


def _duration(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def test_column_constants_are_what_opensmile_writes() -> None:
    from ser_mlflow.data.extract import opensmile_columns

    names = opensmile_columns()
    assert names["egemaps"] == EGEMAPS_COLUMNS and len(EGEMAPS_COLUMNS) == 23
    assert names["egemaps-func"] == EGEMAPS_FUNC_COLUMNS and len(EGEMAPS_FUNC_COLUMNS) == 88
    assert names["mfcc"] == MFCC_COLUMNS and len(MFCC_COLUMNS) == 39
    assert len(COLUMNS["mfcc-func"]) == 78


def test_block_means_and_avec_functionals_match_a_direct_loop() -> None:
    """The vectorised windows equal AVEC's generate_functionals.py loop, edges included."""
    rng = np.random.default_rng(0)
    lld = rng.normal(size=(537, 3)) * [1.0, 50.0, 0.01] + [0.0, 300.0, 1.0]
    n = 53
    want_func = np.empty((n, 6))
    want_block = np.empty((n, 3))
    for t in range(n):
        lo, hi = max(0, t * 10 - 200), min(len(lld), t * 10 + 201)
        want_func[t, 0::2] = lld[lo:hi].mean(axis=0)
        want_func[t, 1::2] = lld[lo:hi].std(axis=0)
        want_block[t] = lld[max(0, t * 10 - 5) : t * 10 + 5].mean(axis=0)
    np.testing.assert_allclose(_window_mean_std(lld, n), want_func, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(_block_means(lld, n), want_block, rtol=1e-12)


def test_functional_windows_are_centred_4s(tmp_path: Path) -> None:
    """A 100 ms tone in 10 s of faint noise raises the sound level of exactly the rows
    whose 4 s window [t - 2, t + 2] holds it (one row of slack for LLD frame lengths)."""
    import soundfile

    sr = 16000
    rng = np.random.default_rng(1)
    y = rng.normal(scale=1e-3, size=10 * sr)
    y[5 * sr : 5 * sr + 1600] += 0.5 * np.sin(2 * np.pi * 1000 * np.arange(1600) / sr)
    soundfile.write(str(tmp_path / "tone.wav"), y, sr)
    from ser_mlflow.data.extract import check_audio, extract_recording

    got = extract_recording(check_audio(tmp_path / "tone.wav"), ["egemaps-func"])
    leq = got.features["egemaps-func"][:, EGEMAPS_FUNC_COLUMNS.index("equivalentSoundLevel_dBp")]
    assert len(leq) == 100
    loud = np.flatnonzero(leq > leq.min() + 10)
    # tone at [5.0, 5.1): windows centred at 3.0 .. 7.1 s overlap it
    assert abs(loud.min() - 30) <= 1 and abs(loud.max() - 70) <= 1, (loud.min(), loud.max())
    assert np.all(np.diff(loud) == 1)


@pytest.mark.slow
def test_extract_writes_the_avec_layout(speech: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    res = CliRunner().invoke(
        main, ["extract", "--audio-dir", str(speech), "--out", str(out), "--jobs", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "Devel_DE_01.wav: 22050 Hz resampled to 16000 Hz" in res.output
    assert "my-talk.flac: 44100 Hz resampled to 16000 Hz" in res.output
    assert "my-talk.flac: 2 channels mixed down to mono" in res.output
    assert "(my-talk): written for prediction only; train refuses a root holding them" in (
        res.output
    )
    for audio, name in ((speech / "Devel_DE_01.wav", "Devel_DE_01"),
                        (speech / "my-talk.flac", "my-talk")):
        rows = math.floor(_duration(audio) / 0.1 + 1e-9)
        assert rows > 50  # several seconds of speech
        for s in EXTRACTABLE:
            table = pd.read_csv(out / s / f"{name}.csv", sep=";")
            assert list(table.columns) == ["name", "frameTime", *COLUMNS[s]], s
            assert len(table) == rows, (s, len(table), rows)
            assert set(table["name"]) == {f"'{name}'"}
            np.testing.assert_allclose(table["frameTime"], np.arange(rows) * 0.1, atol=1e-9)
            values = table[list(COLUMNS[s])].to_numpy(dtype=np.float64)
            assert np.isfinite(values).all(), s
            assert (values.std(axis=0) > 0).mean() > 0.8, s  # speech moves most columns
    loud = pd.read_csv(out / "egemaps" / "Devel_DE_01.csv", sep=";")["Loudness_sma3"]
    assert loud.max() > 5 * max(loud.min(), 1e-3)  # words and pauses
    # the AVEC-named recording is data the corpus reader takes, all four sets side by side
    # (the reader refuses a root that also holds other names, as the note says)
    avec = tmp_path / "avec"
    for s in EXTRACTABLE:
        (avec / s).mkdir(parents=True)
        shutil.copy(out / s / "Devel_DE_01.csv", avec / s)
    corpus = load_corpus(avec, EXTRACTABLE, partitions=("Devel",), labelled=())
    (rec,) = corpus.partition("Devel")
    assert rec.name == "Devel_DE_01" and rec.culture == "DE"
    assert rec.features.shape[1] == sum(len(COLUMNS[s]) for s in EXTRACTABLE)


def _write_empty(path: Path) -> None:
    import soundfile

    soundfile.write(str(path), np.zeros(0, dtype=np.float32), 16000)


def _write_short(path: Path) -> None:
    import soundfile

    soundfile.write(str(path), np.sin(np.arange(16000) / 5.0).astype(np.float32), 16000)


BAD: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "not WAV or FLAC": ("talk.mp3", lambda p: p.write_bytes(b"ID3 not really"),
                        r"talk\.mp3: expected a WAV or FLAC file \(\.wav, \.flac\), got '\.mp3'"),
    "not audio inside": ("talk.wav", lambda p: p.write_text("hello, I am text"),
                         r"talk\.wav: not a readable WAV or FLAC file"),
    "empty": ("talk.wav", _write_empty, r"talk\.wav: empty recording \(no samples\)"),
    "shorter than a window": ("talk.flac", _write_short,
                              r"talk\.flac: 1\.00 s long; at least one 4 s window is needed"),
}


@pytest.mark.parametrize("command", ["extract", "predict"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_audio_one_line_exit_2(case: str, command: str, tmp_path: Path,
                                   tracking_store: str) -> None:
    filename, write, pattern = BAD[case]
    path = tmp_path / filename
    write(path)
    args = (
        ["extract", "--audio-dir", str(path), "--out", str(tmp_path / "out")]
        if command == "extract"
        # the audio is checked before the model is even looked up
        else ["predict", "--audio", str(path), "--model-uri", "models:/nope@champion"]
    )
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_folder_without_audio_and_bad_sets(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no audio here")
    res = CliRunner().invoke(main, ["extract", "--audio-dir", str(tmp_path), "--out", "x"])
    assert res.exit_code == 2 and "no .wav or .flac files in this folder" in res.output
    res = CliRunner().invoke(
        main, ["extract", "--audio-dir", str(tmp_path), "--out", "x", "--feature-sets", "fau"]
    )
    assert res.exit_code == 2
    assert "feature_sets: expected distinct names among egemaps,egemaps-func" in res.output


@pytest.mark.slow
def test_predict_from_recordings(
    speech: Path, tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    """A model trained on the synthetic corpus predicts from spoken WAV/FLAC files."""
    import mlflow

    from ser_mlflow.jobs.train import run_training
    from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig

    def train(sets: tuple[str, ...], epochs: int) -> str:
        cfg = TrainConfig(
            data_root=tiny_corpus, feature_sets=sets, epochs=epochs, batch_size=4,
            model=ModelConfig(units=(8, 4), dropout=0.1, lr=5e-3),
            loss=LossConfig.from_name("MTL2"), seed=0, experiment="audio",
        )
        return run_training(cfg, progress=False, echo=lambda s: None).run_id

    run_id = train(("egemaps", "mfcc-func"), 2)
    out = tmp_path / "emotions"
    res = CliRunner().invoke(main, ["predict", "--audio", str(speech), "--model-uri",
                                    f"runs:/{run_id}/model", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Wrote 2 prediction CSV(s) and plot(s)" in res.output
    for audio, name in ((speech / "Devel_DE_01.wav", "Devel_DE_01"),
                        (speech / "my-talk.flac", "my-talk")):
        ts, values, attrs = read_avec_csv(out / f"{name}.csv")
        assert attrs == ("arousal", "valence", "liking")
        assert len(ts) == math.floor(_duration(audio) / 0.1 + 1e-9)
        assert np.isfinite(values).all() and values.std(axis=0).min() > 0
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (run,) = mlflow.search_runs(experiment_names=["ser-ces"], output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["ser.input"] == "audio"
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id,
                                                                   "predictions/audio")}
    assert logged == {f"predictions/audio/{n}.{e}" for n in ("Devel_DE_01", "my-talk")
                      for e in ("csv", "png")}

    # a model that reads video cannot be fed from audio: one line naming the set
    video_id = train(("egemaps", "fau"), 1)
    res = CliRunner().invoke(main, ["predict", "--audio", str(speech), "--model-uri",
                                    f"runs:/{video_id}/model", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: runs:/{video_id}/model: the model reads fau, which cannot be extracted from "
        "audio (extract computes egemaps, egemaps-func, mfcc, mfcc-func)"
    ]
    assert not (tmp_path / "v").exists()


def test_model_trained_on_other_columns_is_refused() -> None:
    from ser_mlflow.jobs.audio_predict import model_feature_sets
    from ser_mlflow.models.metadata import ModelMetadata

    meta = ModelMetadata(feature_sets=["egemaps-func"], attributes=["arousal"],
                         feature_columns=[f"egemaps-func:{c}" for c in EGEMAPS_FUNC_COLUMNS[:16]])
    with pytest.raises(ValueError, match=r"egemaps-func columns \(16\) differ from the 88"):
        model_feature_sets(meta, "runs:/x/model")
