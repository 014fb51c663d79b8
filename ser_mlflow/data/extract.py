"""Recordings -> AVEC-layout audio feature files with openSMILE (the AVEC 2019 audio sets).

A researcher with new recordings needs the same four audio sets the corpus was built
from; openSMILE, the field's own extractor, ships on PyPI with its library in the wheel.
Every recording becomes one CSV per feature set, ``name;frameTime;<columns>``, one row per
100 ms (row k at k * 0.1 s, as many rows as whole 100 ms hops in the recording).

What is computed, and where it follows or differs from the AVEC 2019 baseline scripts
(``Baseline_features_extraction/Low-Level-Descriptors`` of the AVEC2019 repository):

- Audio is read as mono 16 kHz: other rates are resampled, several channels averaged,
  and both are reported. (AVEC fed SEWA's files to SMILExtract as they were.)
- ``egemaps``: openSMILE's eGeMAPSv01a LLDs (23, the config AVEC used), every 10 ms;
  row k is the mean of the ten LLD frames starting in [k*0.1 - 0.05, k*0.1 + 0.05).
  AVEC's script writes the 10 ms LLDs and leaves bringing them to the 100 ms label rate
  to the user; the block mean is this project's choice.
- ``egemaps-func``: openSMILE's eGeMAPSv01a functionals (88), computed by openSMILE on
  4 s windows centred on every row, [k*0.1 - 2, k*0.1 + 2], cut at the start of the
  recording, and at its end 0.1 s early (openSMILE emits a window only when all its LLD
  frames exist). This follows AVEC's window (4 s, centred, cut at the edges, hop 100 ms)
  but AVEC's ``generate_functionals.py`` takes only mean and standard deviation of the
  23 LLDs (46 columns); the 88 columns are the eGeMAPS functionals that this project's
  data layer and synthetic corpus hold for this set.
- ``mfcc``: MFCC 0-12 with deltas and accelerations (39), as AVEC's ``MFCC12_0_D_A.conf``
  (25 ms Hamming frames every 10 ms, pre-emphasis 0.97, 26 mel bands, cepstral lifter
  22, HTK-compatible; regression window 2), from a config in this module; block means
  per 100 ms as for ``egemaps``.
- ``mfcc-func``: exactly AVEC's ``generate_functionals.py``: mean and (population)
  standard deviation of the 39 MFCC LLDs over frames [10k - 200, 10k + 200], cut at the
  edges. Named as openSMILE's cFunctionals would name them (``mfcc[0]_amean``).

Column names are the names openSMILE writes (``tests/test_extract.py`` holds the
constants below equal to them). openSMILE is imported only when extracting.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow.data.layout import DataError, canonical_recording_name

__all__ = [
    "AUDIO_SUFFIXES",
    "COLUMNS",
    "EXTRACTABLE",
    "AudioInfo",
    "ExtractSummary",
    "Extracted",
    "audio_files",
    "check_audio",
    "extract_folder",
    "extract_recording",
    "n_rows",
    "recording_name",
]

EXTRACTABLE: tuple[str, ...] = ("egemaps", "egemaps-func", "mfcc", "mfcc-func")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac")
SAMPLE_RATE = 16000
HOP_S = 0.1  # one row per label frame
WINDOW_S = 4.0  # functionals window, centred on the row (AVEC 2019)
_LLDS_PER_ROW = 10
_HALF_WINDOW_LLDS = 200  # AVEC: int(4.0 s * 100 fps / 2)
_END_MARGIN_S = 0.1

EGEMAPS_COLUMNS: tuple[str, ...] = (
    "Loudness_sma3",
    "alphaRatio_sma3",
    "hammarbergIndex_sma3",
    "slope0-500_sma3",
    "slope500-1500_sma3",
    "spectralFlux_sma3",
    "mfcc1_sma3",
    "mfcc2_sma3",
    "mfcc3_sma3",
    "mfcc4_sma3",
    "F0semitoneFrom27.5Hz_sma3nz",
    "jitterLocal_sma3nz",
    "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz",
    "logRelF0-H1-H2_sma3nz",
    "logRelF0-H1-A3_sma3nz",
    "F1frequency_sma3nz",
    "F1bandwidth_sma3nz",
    "F1amplitudeLogRelF0_sma3nz",
    "F2frequency_sma3nz",
    "F2amplitudeLogRelF0_sma3nz",
    "F3frequency_sma3nz",
    "F3amplitudeLogRelF0_sma3nz",
)
EGEMAPS_FUNC_COLUMNS: tuple[str, ...] = (
    "F0semitoneFrom27.5Hz_sma3nz_amean",
    "F0semitoneFrom27.5Hz_sma3nz_stddevNorm",
    "F0semitoneFrom27.5Hz_sma3nz_percentile20.0",
    "F0semitoneFrom27.5Hz_sma3nz_percentile50.0",
    "F0semitoneFrom27.5Hz_sma3nz_percentile80.0",
    "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2",
    "F0semitoneFrom27.5Hz_sma3nz_meanRisingSlope",
    "F0semitoneFrom27.5Hz_sma3nz_stddevRisingSlope",
    "F0semitoneFrom27.5Hz_sma3nz_meanFallingSlope",
    "F0semitoneFrom27.5Hz_sma3nz_stddevFallingSlope",
    "loudness_sma3_amean",
    "loudness_sma3_stddevNorm",
    "loudness_sma3_percentile20.0",
    "loudness_sma3_percentile50.0",
    "loudness_sma3_percentile80.0",
    "loudness_sma3_pctlrange0-2",
    "loudness_sma3_meanRisingSlope",
    "loudness_sma3_stddevRisingSlope",
    "loudness_sma3_meanFallingSlope",
    "loudness_sma3_stddevFallingSlope",
    "spectralFlux_sma3_amean",
    "spectralFlux_sma3_stddevNorm",
    "mfcc1_sma3_amean",
    "mfcc1_sma3_stddevNorm",
    "mfcc2_sma3_amean",
    "mfcc2_sma3_stddevNorm",
    "mfcc3_sma3_amean",
    "mfcc3_sma3_stddevNorm",
    "mfcc4_sma3_amean",
    "mfcc4_sma3_stddevNorm",
    "jitterLocal_sma3nz_amean",
    "jitterLocal_sma3nz_stddevNorm",
    "shimmerLocaldB_sma3nz_amean",
    "shimmerLocaldB_sma3nz_stddevNorm",
    "HNRdBACF_sma3nz_amean",
    "HNRdBACF_sma3nz_stddevNorm",
    "logRelF0-H1-H2_sma3nz_amean",
    "logRelF0-H1-H2_sma3nz_stddevNorm",
    "logRelF0-H1-A3_sma3nz_amean",
    "logRelF0-H1-A3_sma3nz_stddevNorm",
    "F1frequency_sma3nz_amean",
    "F1frequency_sma3nz_stddevNorm",
    "F1bandwidth_sma3nz_amean",
    "F1bandwidth_sma3nz_stddevNorm",
    "F1amplitudeLogRelF0_sma3nz_amean",
    "F1amplitudeLogRelF0_sma3nz_stddevNorm",
    "F2frequency_sma3nz_amean",
    "F2frequency_sma3nz_stddevNorm",
    "F2bandwidth_sma3nz_amean",
    "F2bandwidth_sma3nz_stddevNorm",
    "F2amplitudeLogRelF0_sma3nz_amean",
    "F2amplitudeLogRelF0_sma3nz_stddevNorm",
    "F3frequency_sma3nz_amean",
    "F3frequency_sma3nz_stddevNorm",
    "F3bandwidth_sma3nz_amean",
    "F3bandwidth_sma3nz_stddevNorm",
    "F3amplitudeLogRelF0_sma3nz_amean",
    "F3amplitudeLogRelF0_sma3nz_stddevNorm",
    "alphaRatioV_sma3nz_amean",
    "alphaRatioV_sma3nz_stddevNorm",
    "hammarbergIndexV_sma3nz_amean",
    "hammarbergIndexV_sma3nz_stddevNorm",
    "slopeV0-500_sma3nz_amean",
    "slopeV0-500_sma3nz_stddevNorm",
    "slopeV500-1500_sma3nz_amean",
    "slopeV500-1500_sma3nz_stddevNorm",
    "spectralFluxV_sma3nz_amean",
    "spectralFluxV_sma3nz_stddevNorm",
    "mfcc1V_sma3nz_amean",
    "mfcc1V_sma3nz_stddevNorm",
    "mfcc2V_sma3nz_amean",
    "mfcc2V_sma3nz_stddevNorm",
    "mfcc3V_sma3nz_amean",
    "mfcc3V_sma3nz_stddevNorm",
    "mfcc4V_sma3nz_amean",
    "mfcc4V_sma3nz_stddevNorm",
    "alphaRatioUV_sma3nz_amean",
    "hammarbergIndexUV_sma3nz_amean",
    "slopeUV0-500_sma3nz_amean",
    "slopeUV500-1500_sma3nz_amean",
    "spectralFluxUV_sma3nz_amean",
    "loudnessPeaksPerSec",
    "VoicedSegmentsPerSec",
    "MeanVoicedSegmentLengthSec",
    "StddevVoicedSegmentLengthSec",
    "MeanUnvoicedSegmentLength",
    "StddevUnvoicedSegmentLength",
    "equivalentSoundLevel_dBp",
)
MFCC_COLUMNS: tuple[str, ...] = tuple(
    f"mfcc{d}[{i}]" for d in ("", "_de", "_de_de") for i in range(13)
)
MFCC_FUNC_COLUMNS: tuple[str, ...] = tuple(
    f"{c}_{s}" for c in MFCC_COLUMNS for s in ("amean", "stddev")
)
COLUMNS: dict[str, tuple[str, ...]] = {
    "egemaps": EGEMAPS_COLUMNS,
    "egemaps-func": EGEMAPS_FUNC_COLUMNS,
    "mfcc": MFCC_COLUMNS,
    "mfcc-func": MFCC_FUNC_COLUMNS,
}

# MFCC 0-12 + delta + acceleration at 10 ms, the parameters of openSMILE's standard
# MFCC12_0_D_A.conf that AVEC 2019 used; source and sink are the Python wrapper's.
_MFCC_CONFIG = r"""
[componentInstances:cComponentManager]
instance[dataMemory].type=cDataMemory
\{\cm[source{?}:include external source]}
[componentInstances:cComponentManager]
instance[framer].type=cFramer
instance[pe].type=cVectorPreemphasis
instance[win].type=cWindower
instance[fft].type=cTransformFFT
instance[fftmag].type=cFFTmagphase
instance[melspec].type=cMelspec
instance[mfcc].type=cMfcc
instance[delta1].type=cDeltaRegression
instance[delta2].type=cDeltaRegression
instance[lldconcat].type=cVectorConcat
[framer:cFramer]
reader.dmLevel=wave
writer.dmLevel=frames
copyInputName=1
frameMode=fixed
frameSize=0.025
frameStep=0.010
frameCenterSpecial=left
noPostEOIprocessing=1
[pe:cVectorPreemphasis]
reader.dmLevel=frames
writer.dmLevel=framespe
k=0.97
de=0
[win:cWindower]
reader.dmLevel=framespe
writer.dmLevel=winframe
copyInputName=1
processArrayFields=1
winFunc=ham
gain=1.0
offset=0
[fft:cTransformFFT]
reader.dmLevel=winframe
writer.dmLevel=fftc
copyInputName=1
processArrayFields=1
inverse=0
zeroPadSymmetric=0
[fftmag:cFFTmagphase]
reader.dmLevel=fftc
writer.dmLevel=fftmag
copyInputName=1
processArrayFields=1
inverse=0
magnitude=1
phase=0
[melspec:cMelspec]
reader.dmLevel=fftmag
writer.dmLevel=mspec
nameAppend=melspec
copyInputName=1
processArrayFields=1
htkcompatible=1
usePower=0
nBands=26
lofreq=0
hifreq=8000
inverse=0
specScale=mel
[mfcc:cMfcc]
reader.dmLevel=mspec
writer.dmLevel=mfcc1
copyInputName=0
processArrayFields=1
firstMfcc=0
lastMfcc=12
cepLifter=22.0
htkcompatible=1
[delta1:cDeltaRegression]
reader.dmLevel=mfcc1
writer.dmLevel=mfccD
nameAppend=de
copyInputName=1
noPostEOIprocessing=0
deltawin=2
blocksize=1
[delta2:cDeltaRegression]
reader.dmLevel=mfccD
writer.dmLevel=mfccA
nameAppend=de
copyInputName=1
noPostEOIprocessing=0
deltawin=2
blocksize=1
[lldconcat:cVectorConcat]
reader.dmLevel=mfcc1;mfccD;mfccA
writer.dmLevel=lld
includeSingleElementFields=1
\{\cm[sink{?}:include external sink]}
"""

Echo = Callable[[str], None]


@dataclass(frozen=True)
class AudioInfo:
    """One checked recording: where it is, what it will be called, how it is read."""

    path: Path
    name: str
    avec_name: bool  # named <Partition>_<Culture>_<NN>: usable as training data
    duration_s: float
    sample_rate: int
    channels: int

    @property
    def notes(self) -> list[str]:
        """What reading it changes (said to the user, never silently done)."""
        out = []
        if self.sample_rate != SAMPLE_RATE:
            out.append(f"{self.sample_rate} Hz resampled to {SAMPLE_RATE} Hz")
        if self.channels > 1:
            out.append(f"{self.channels} channels mixed down to mono")
        return out


@dataclass(frozen=True)
class Extracted:
    """The feature rows of one recording: ``times`` (T,), per set (T, C) arrays."""

    info: AudioInfo
    times: np.ndarray
    features: dict[str, np.ndarray]


@dataclass(frozen=True)
class ExtractSummary:
    out: Path
    recordings: list[str]
    feature_sets: tuple[str, ...]
    audio_s: float
    compute_s: float
    jobs: int


def n_rows(duration_s: float) -> int:
    """Rows of a recording: one per whole 100 ms hop (row k at k * 0.1 s)."""
    return int(math.floor(duration_s / HOP_S + 1e-9))


def recording_name(stem: str, *, path: Path) -> tuple[str, bool]:
    """(name written in the CSVs, whether it is an AVEC name that keeps partition/culture).

    Raises:
        DataError: a name holding a CSV separator, quote or whitespace.
    """
    try:
        return canonical_recording_name(stem, path=path)[0], True
    except DataError:
        pass
    if not stem or re.search(r"[;,'\"\s]", stem):
        raise DataError(
            f"{path}: file name {stem!r} holds a separator, quote or space; rename it "
            "(letters, digits, '-', '_', '.')"
        )
    return stem, False


def check_audio(path: str | Path) -> AudioInfo:
    """Open a recording's header and refuse what cannot be extracted.

    Raises:
        DataError: not a WAV/FLAC file, unreadable, empty, or shorter than one window.
    """
    import soundfile

    p = Path(path)
    if p.suffix.lower() not in AUDIO_SUFFIXES:
        raise DataError(f"{p}: expected a WAV or FLAC file (.wav, .flac), got {p.suffix!r}")
    if not p.is_file():
        raise DataError(f"{p}: file does not exist")
    try:
        info = soundfile.info(str(p))
    except Exception as exc:  # libsndfile's error says what it saw
        reason = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise DataError(f"{p}: not a readable WAV or FLAC file ({reason})") from None
    if info.format not in ("WAV", "WAVEX", "RF64", "FLAC"):
        raise DataError(f"{p}: expected a WAV or FLAC file, found format {info.format}")
    if info.frames == 0 or info.samplerate <= 0:
        raise DataError(f"{p}: empty recording (no samples)")
    duration = info.frames / info.samplerate
    if duration < WINDOW_S:
        raise DataError(
            f"{p}: {duration:.2f} s long; at least one {WINDOW_S:g} s window is needed"
        )
    name, avec = recording_name(p.stem, path=p)
    return AudioInfo(p, name, avec, duration, int(info.samplerate), int(info.channels))


def audio_files(path: str | Path) -> list[AudioInfo]:
    """Every recording of a file or folder (``*.wav``, ``*.flac``, not recursive), checked.

    Raises:
        DataError: nothing to read, a bad recording, or two files of the same name.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in AUDIO_SUFFIXES
        )
        if not files:
            raise DataError(f"{p}: no .wav or .flac files in this folder")
    else:
        files = [p]
    infos = [check_audio(f) for f in files]
    seen: dict[str, Path] = {}
    for info in infos:
        if info.name in seen:
            raise DataError(
                f"{info.path}: same recording name {info.name} as {seen[info.name].name}"
            )
        seen[info.name] = info.path
    return infos


def _read_signal(info: AudioInfo) -> np.ndarray:
    """Mono float32 at 16 kHz."""
    import soundfile

    x, sr = soundfile.read(str(info.path), dtype="float32", always_2d=True)
    y = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if sr != SAMPLE_RATE:
        import audresample

        y = audresample.resample(y, sr, SAMPLE_RATE)[0]
    return np.ascontiguousarray(y, dtype=np.float32)


def _block_means(lld: np.ndarray, n: int) -> np.ndarray:
    """Row k = mean of the LLD frames starting in [k*0.1 - 0.05, k*0.1 + 0.05)."""
    half = _LLDS_PER_ROW // 2
    cs = np.vstack([np.zeros((1, lld.shape[1])), np.cumsum(lld, axis=0)])
    k = np.arange(n) * _LLDS_PER_ROW
    lo = np.clip(k - half, 0, len(lld))
    hi = np.clip(k + half, 0, len(lld))
    hi = np.maximum(hi, np.minimum(lo + 1, len(lld)))
    return (cs[hi] - cs[lo]) / (hi - lo)[:, None]


def _window_mean_std(lld: np.ndarray, n: int) -> np.ndarray:
    """AVEC's functionals: per LLD, (mean, std) over frames [10k - 200, 10k + 200]."""
    x = lld.astype(np.float64)
    cs = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    cs2 = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
    k = np.arange(n) * _LLDS_PER_ROW
    lo = np.clip(k - _HALF_WINDOW_LLDS, 0, len(x))
    hi = np.clip(k + _HALF_WINDOW_LLDS + 1, 0, len(x))
    cnt = (hi - lo)[:, None]
    mean = (cs[hi] - cs[lo]) / cnt
    var = np.maximum((cs2[hi] - cs2[lo]) / cnt - mean * mean, 0.0)
    out = np.empty((n, 2 * x.shape[1]))
    out[:, 0::2] = mean
    out[:, 1::2] = np.sqrt(var)
    return out


def _smile_frame(frame: Any, columns: Sequence[str], what: str) -> np.ndarray:
    names = tuple(frame.columns)
    if names != tuple(columns):  # a different openSMILE would change what models read
        raise RuntimeError(f"openSMILE {what}: columns {names[:3]}... differ from the expected")
    return frame.to_numpy(dtype=np.float64)


@functools.cache
def _lld_smile(kind: str) -> Any:
    """One openSMILE extractor per kind and process: setting one up costs ~0.4 s CPU."""
    import opensmile

    if kind == "egemaps":
        return opensmile.Smile(
            opensmile.FeatureSet.eGeMAPSv01a, opensmile.FeatureLevel.LowLevelDescriptors
        )
    folder = Path(tempfile.mkdtemp(prefix="ser-smile-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    conf = folder / "MFCC12_0_D_A.conf"
    conf.write_text(_MFCC_CONFIG)
    return opensmile.Smile(str(conf), "lld")


def tensorflow_loaded() -> bool:
    """Whether this process has imported TensorFlow.

    openSMILE's library, run in a process that loaded TensorFlow first, corrupts the heap
    (``malloc(): invalid size``, then SIGABRT/SIGSEGV; seen with tensorflow 2.21 and
    opensmile 2.6.0 when tensorflow was imported first). Such processes extract in a
    fresh spawned process instead.
    """
    return "tensorflow" in sys.modules


def _isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` here, or in a fresh process when TensorFlow is loaded here."""
    if not tensorflow_loaded():
        return fn(*args)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def opensmile_columns() -> dict[str, tuple[str, ...]]:
    """The LLD/functional names openSMILE itself reports (what :data:`COLUMNS` must be)."""
    return dict(_isolated(_opensmile_columns))


def _opensmile_columns() -> dict[str, tuple[str, ...]]:
    import warnings

    import opensmile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        func = opensmile.Smile(
            opensmile.FeatureSet.eGeMAPSv01a, opensmile.FeatureLevel.Functionals
        )
        return {
            "egemaps": tuple(_lld_smile("egemaps").feature_names),
            "egemaps-func": tuple(func.feature_names),
            "mfcc": tuple(_lld_smile("mfcc").feature_names),
        }


def extract_recording(info: AudioInfo, feature_sets: Sequence[str]) -> Extracted:
    """Extract the given sets of one recording (in a fresh process if TensorFlow is here).

    Raises:
        DataError: features that are not finite (names the file).
    """
    return _isolated(_extract_here, info, tuple(feature_sets))  # type: ignore[no-any-return]


def _extract_here(info: AudioInfo, feature_sets: Sequence[str]) -> Extracted:
    import warnings

    import opensmile

    signal = _read_signal(info)
    duration = len(signal) / SAMPLE_RATE
    n = n_rows(duration)
    times = np.round(np.arange(n) * HOP_S, 6)
    out: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "eGeMAPSv01a is deprecated": AVEC's set, on purpose
        if "egemaps" in feature_sets:
            frame = _lld_smile("egemaps").process_signal(signal, SAMPLE_RATE)
            out["egemaps"] = _block_means(_smile_frame(frame, EGEMAPS_COLUMNS, "LLD"), n)
        if "egemaps-func" in feature_sets:
            out["egemaps-func"] = _egemaps_functionals(signal, n, duration, opensmile)
        if "mfcc" in feature_sets or "mfcc-func" in feature_sets:
            frame = _lld_smile("mfcc").process_signal(signal, SAMPLE_RATE)
            mfcc = _smile_frame(frame, MFCC_COLUMNS, "MFCC")
            if "mfcc" in feature_sets:
                out["mfcc"] = _block_means(mfcc, n)
            if "mfcc-func" in feature_sets:
                out["mfcc-func"] = _window_mean_std(mfcc, n)
    for s, values in out.items():
        if values.shape != (n, len(COLUMNS[s])):
            raise RuntimeError(f"{info.path}: {s} has shape {values.shape}, expected {n} rows")
        if not np.isfinite(values).all():
            raise DataError(f"{info.path}: openSMILE gave non-finite {s} features")
    return Extracted(info, times, {s: out[s] for s in feature_sets})


def _egemaps_functionals(
    signal: np.ndarray, n: int, duration: float, opensmile: Any
) -> np.ndarray:
    """eGeMAPS functionals on one centred 4 s window per row, in one openSMILE pass."""
    end = duration - _END_MARGIN_S
    half = WINDOW_S / 2
    frames = ",".join(
        f"{max(0.0, k * HOP_S - half):.3f}s-{min(end, k * HOP_S + half):.3f}s" for k in range(n)
    )
    with tempfile.TemporaryDirectory(prefix="ser-smile-") as tmp:
        mode = Path(tmp) / "FrameModeFunctionals.conf.inc"
        mode.write_text(f"frameMode = list\nframeList = {frames}\n")
        smile = opensmile.Smile(
            opensmile.FeatureSet.eGeMAPSv01a,
            opensmile.FeatureLevel.Functionals,
            options={"frameModeFunctionalsConf": str(mode)},
        )
        values = _smile_frame(
            smile.process_signal(signal, SAMPLE_RATE), EGEMAPS_FUNC_COLUMNS, "functionals"
        )
    if len(values) != n:
        raise RuntimeError(f"openSMILE functionals: {len(values)} windows, expected {n}")
    return values


def write_feature_csv(path: Path, name: str, times: np.ndarray, values: np.ndarray,
                      columns: Sequence[str]) -> None:
    """``name;frameTime;<columns>`` then ``'<name>';<time>;<values>`` rows (AVEC layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = np.char.add(
        f"'{name}';",
        np.char.add(
            np.char.mod("%.1f", times),
            np.char.add(";", [";".join(r) for r in np.char.mod("%.7g", values)]),
        ),
    )
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("name;frameTime;" + ";".join(columns) + "\n")
        fh.write("\n".join(body.tolist()) + "\n")


def _extract_and_write(info: AudioInfo, feature_sets: Sequence[str], out: Path) -> Extracted:
    result = extract_recording(info, feature_sets)
    for s in feature_sets:
        write_feature_csv(out / s / f"{info.name}.csv", info.name, result.times,
                          result.features[s], COLUMNS[s])
    return result


def parse_extract_sets(text: str | Sequence[str]) -> tuple[str, ...]:
    """``egemaps,mfcc`` -> ("egemaps", "mfcc"); only sets openSMILE gives from audio.

    Raises:
        ValueError: an unknown or non-audio set, or none.
    """
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    names = [s for s in names if s]
    bad = [s for s in names if s not in EXTRACTABLE]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(
            f"feature_sets: expected distinct names among {','.join(EXTRACTABLE)}, "
            f"got {','.join(names) or 'none'}"
        )
    return tuple(names)


def default_jobs(n_files: int) -> int:
    """Both (all) cores, never more processes than files."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, n_files))


def run_extraction(
    infos: Sequence[AudioInfo],
    feature_sets: Sequence[str],
    *,
    out: Path | None,
    jobs: int,
    progress: bool,
    echo: Echo,
) -> list[Extracted]:
    """Extract (and, with ``out``, write) every recording on ``jobs`` processes.

    Separate processes, not threads: openSMILE holds the GIL through its Python
    callbacks. ``spawn``, not fork: openSMILE must not run where TensorFlow was loaded
    (see :func:`tensorflow_loaded`), so a parent that loaded it always uses workers.
    """
    import multiprocessing

    from tqdm import tqdm

    for info in infos:
        for note in info.notes:
            echo(f"note: {info.path.name}: {note}")
    bar: Any = tqdm(total=len(infos), desc="extract", unit="rec", disable=not progress)
    done: dict[Path, Extracted] = {}
    try:
        if jobs <= 1 and not tensorflow_loaded():
            for info in infos:
                done[info.path] = (
                    _extract_and_write(info, feature_sets, out) if out is not None
                    else extract_recording(info, feature_sets)
                )
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=max(jobs, 1), mp_context=ctx) as pool:
                futures = {
                    (pool.submit(_extract_and_write, i, tuple(feature_sets), out)
                     if out is not None else pool.submit(extract_recording, i,
                                                         tuple(feature_sets))): i
                    for i in infos
                }
                for fut in as_completed(futures):
                    done[futures[fut].path] = fut.result()
                    bar.update()
    finally:
        bar.close()
    return [done[i.path] for i in infos]


def extract_folder(
    audio: str | Path,
    out: str | Path,
    *,
    feature_sets: Sequence[str] = EXTRACTABLE,
    jobs: int = 0,
    progress: bool = False,
    echo: Echo = print,
) -> ExtractSummary:
    """Write ``<out>/<feature_set>/<name>.csv`` for every recording of a file or folder.

    Every file is checked before any is extracted, so one bad file stops the command
    before it has spent minutes on the others.

    Args:
        audio: a WAV/FLAC file or a folder of them.
        out: the AVEC-layout root to write into (existing files are replaced).
        feature_sets: which of :data:`EXTRACTABLE` to write.
        jobs: worker processes; 0 = one per core (at most one per file).
        progress: a tqdm progress bar over recordings.

    Raises:
        DataError: a bad recording or name (one line naming the file).
        ValueError: unknown feature sets or a negative ``jobs``.
    """
    import time

    sets = parse_extract_sets(feature_sets)
    if jobs < 0:
        raise ValueError(f"jobs: expected 0 (one per core) or more, got {jobs}")
    infos = audio_files(audio)
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    n_jobs = jobs or default_jobs(len(infos))
    start = time.perf_counter()
    run_extraction(infos, sets, out=root, jobs=n_jobs, progress=progress, echo=echo)
    elapsed = time.perf_counter() - start
    other = [i.name for i in infos if not i.avec_name]
    if other:
        echo(
            f"note: {len(other)} recording(s) not named <Partition>_<Culture>_<NN> "
            f"({', '.join(other[:3])}{' ...' if len(other) > 3 else ''}): written for "
            "prediction only; train refuses a root holding them (use another --out for "
            "training data)"
        )
    return ExtractSummary(root, [i.name for i in infos], sets,
                          sum(i.duration_s for i in infos), elapsed, n_jobs)
