"""Synthetic stand-in for the AVEC 2019 CES corpus: NOT real data.

The real SEWA features and labels cannot be shipped, so this module writes a corpus
with the same layout (DESIGN.md section 3), the same 12 feature-set folders, cultures DE
and HU, and statistics that make the learning problem behave like the real one. Scores
on it say whether the pipeline works; they say nothing about emotion recognition.

How the data are made (per recording, everything drawn from ``numpy.random.Generator``
streams seeded by ``(seed, feature set, recording name)``, so the same seed and scale
give byte-identical files):

1. Latent emotion: arousal, valence and liking trajectories at 10 Hz, each a recording
   mean plus a smooth zero-mean process (white noise through two cascaded first-order
   low-pass filters, time constant 0.8 s each). The three are correlated
   (arousal-valence 0.4, valence-liking 0.25, arousal-liking 0.1); DE and HU differ in
   their means.
   Values stay in about [-1, 1] like SEWA (clipped there).
2. Annotation delay: ``label[t] = latent[t - d]``: annotators lag ``d`` frames, one
   (0.1 s) by default, so shifting labels ``d`` frames to the front aligns them with the
   features. ``delay_frames`` sets ``d`` (the delay sweep's tests plant a known one).
3. Information bottleneck per feature set: the features of a set see
   ``o = w * latent + sqrt(1 - w**2) * nuisance`` per attribute, where the nuisance is
   a smooth process partly shared by all sets of the same modality (so fusing sets of
   one modality helps less than fusing audio with video). ``w`` differs per set and
   attribute: audio sets carry arousal best, video sets valence, liking is weakest
   everywhere, and the FAU sets are the best on valence. This is what makes a ranking of
   feature sets exist (``_SETS`` below lists every ``w``).
4. Features: per column, a linear plus a ``tanh`` mixture of ``o``, smooth nuisance
   factors (head pose, channel) and white noise; then per-recording speaker offsets and
   gains, per-culture offsets, and a per-column unit (e.g. F1 frequency around 550 Hz,
   spectral slope around 0.05), so standardisation matters. Kinds: LLD-like frames;
   functionals (mean, std, percentiles over a sliding 2 s window of LLD-like frames,
   whose variability also grows with arousal; AVEC used 4 s, but with these faster
   synthetic trajectories 4 s would average the signal away); bag-of-words counts
   (Poisson counts, written as integers); deep-network activations (ReLU, about half
   zeros); facial action-unit intensities (clipped to [0, 5]).
5. Files: feature values with about 4 significant digits (fixed decimals per column),
   ``name;frameTime;<columns>`` header; labels in the AVEC format, written for Train,
   Devel AND Test (the real Test labels are not public; here they let test CCC be
   reported). Feature files are as long as their labels (the real ones are padded to
   1768 frames; the reader handles both).

Dimensions: egemaps 23, egemaps-func 88, egemaps-xbow 100, mfcc 39, mfcc-func 78,
mfcc-xbow 100, fau 17, fau-func 34 and visual-xbow 100 are the real sizes;
deepspectrum (real 4096 -> 128), visual-resnet (2048 -> 64) and visual-vgg (4096 -> 64)
are reduced to keep the corpus small and fast. The four sets ``ser-mlflow extract``
computes from audio (egemaps, egemaps-func, mfcc, mfcc-func) carry exactly its column
names and counts (``ser_mlflow.data.extract.COLUMNS``), at every scale, so a model trained
here reads extracted files and the other way round (the numbers differ; the path does
not). At ``tiny`` scale the other sets wider than 40 columns are cut to 16.

Scales (recordings DE+HU per partition, frames per recording):

- ``full``: Train 34+34, Devel 14+14, Test 16+18, 975-1768 frames (like SEWA).
- ``small``: Train 8+8, Devel 4+4, Test 2+2, 200-400 frames.
- ``tiny``: Train 3+3, Devel 2+2, Test 1+1, 60-120 frames (unit tests).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow.data.avec_csv import write_avec_csv
from ser_mlflow.data.extract import COLUMNS as EXTRACTED_COLUMNS
from ser_mlflow.data.extract import EGEMAPS_COLUMNS, MFCC_COLUMNS
from ser_mlflow.data.layout import LABELS_FOLDER, PARTITIONS
from ser_mlflow.settings import AUDIO_FEATURE_SETS, PAPER_FEATURE_SETS

__all__ = ["ATTRIBUTES", "CULTURES", "SCALES", "SyntheticSummary", "write_synthetic_corpus"]

SCALES: tuple[str, ...] = ("full", "small", "tiny")
CULTURES: tuple[str, ...] = ("DE", "HU")
ATTRIBUTES: tuple[str, ...] = ("arousal", "valence", "liking")
MARKER = "SYNTHETIC.json"
GENERATOR_VERSION = 2  # 2: audio sets named as `extract` writes them

_FRAME_S = 0.1
_WINDOW = 20  # functionals: 2 s sliding windows (AVEC 2019 used 4 s; see the module doc)
_TAU = 8.0  # latent time constant in frames (0.8 s per low-pass stage)
_CORR = np.array([[1.0, 0.4, 0.1], [0.4, 1.0, 0.25], [0.1, 0.25, 1.0]])
_CULTURE_MEAN = {"DE": np.array([0.12, 0.15, 0.10]), "HU": np.array([0.05, 0.08, 0.04])}
_REC_SD = 0.08  # spread of recording means
_FLUCT_SD = 0.2  # within-recording spread
_LATENT_SD = float(np.hypot(_REC_SD, _FLUCT_SD))
_MODALITY_SHARE = 0.7  # share of a set's nuisance common to its modality
_N_FACTORS = 4  # smooth nuisance factors mixed into every set's columns
_WIDE = 40  # at tiny scale, sets with more columns than this are cut (not extractable ones)
_SPEAKER_OFFSET = 0.25  # per-recording column offsets, in units of the signal spread
_SPEAKER_GAIN = 0.15  # log-sd of per-recording column gains
_CULTURE_OFFSET = 0.2  # per-culture column offsets


@dataclass(frozen=True)
class _Scale:
    counts: dict[str, tuple[int, int]]  # partition -> (DE, HU) recordings
    frames: tuple[int, int]
    max_dim: int | None  # sets wider than _WIDE columns are cut to this many


_SCALES: dict[str, _Scale] = {
    "full": _Scale({"Train": (34, 34), "Devel": (14, 14), "Test": (16, 18)}, (975, 1768), None),
    "small": _Scale({"Train": (8, 8), "Devel": (4, 4), "Test": (2, 2)}, (200, 400), None),
    "tiny": _Scale({"Train": (3, 3), "Devel": (2, 2), "Test": (1, 1)}, (60, 120), 16),
}

# eGeMAPSv01a LLDs as openSMILE writes them (AVEC's 23), with a plausible (mean, sd) per
# column so that columns live on very different scales like the real ones.
_EGEMAPS: tuple[tuple[str, float, float], ...] = (
    ("Loudness_sma3", 0.8, 0.5),
    ("alphaRatio_sma3", -10.0, 5.0),
    ("hammarbergIndex_sma3", 15.0, 8.0),
    ("slope0-500_sma3", 0.05, 0.03),
    ("slope500-1500_sma3", -0.01, 0.01),
    ("spectralFlux_sma3", 0.4, 0.3),
    ("mfcc1_sma3", 20.0, 10.0),
    ("mfcc2_sma3", 8.0, 8.0),
    ("mfcc3_sma3", 5.0, 8.0),
    ("mfcc4_sma3", 3.0, 8.0),
    ("F0semitoneFrom27.5Hz_sma3nz", 28.0, 6.0),
    ("jitterLocal_sma3nz", 0.02, 0.02),
    ("shimmerLocaldB_sma3nz", 1.2, 0.6),
    ("HNRdBACF_sma3nz", 5.0, 4.0),
    ("logRelF0-H1-H2_sma3nz", 4.0, 5.0),
    ("logRelF0-H1-A3_sma3nz", 20.0, 8.0),
    ("F1frequency_sma3nz", 550.0, 150.0),
    ("F1bandwidth_sma3nz", 1200.0, 300.0),
    ("F1amplitudeLogRelF0_sma3nz", -100.0, 50.0),
    ("F2frequency_sma3nz", 1600.0, 250.0),
    ("F2amplitudeLogRelF0_sma3nz", -100.0, 50.0),
    ("F3frequency_sma3nz", 2700.0, 250.0),
    ("F3amplitudeLogRelF0_sma3nz", -110.0, 50.0),
)
_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
assert tuple(c[0] for c in _EGEMAPS) == EGEMAPS_COLUMNS
_MFCC = MFCC_COLUMNS
# functionals: a statistic's place relative to the window's mean, in window-std units;
# spreads (stddev, ranges, slopes) are non-negative multiples of the window std
_PCT = {"percentile20.0": -0.84, "percentile50.0": 0.0, "percentile80.0": 0.84}
_SPREAD = {"pctlrange0-2": 1.68}


def _stem_stat(column: str) -> tuple[str, str]:
    """``F0..._sma3nz_amean`` -> (LLD stem, statistic); whole-window counts are means."""
    if "_" not in column:  # loudnessPeaksPerSec, VoicedSegmentsPerSec, ...
        return column, "amean"
    stem, stat = column.rsplit("_", 1)
    return (stem, stat) if stat != "dBp" else (column, "amean")


def _is_spread(stat: str) -> bool:
    return stat.startswith("stddev") or stat in _SPREAD or stat.endswith("Slope")


@dataclass(frozen=True)
class _SetSpec:
    """How one feature set is generated.

    ``strength`` is the bottleneck weight w per attribute (arousal, valence, liking):
    the correlation between what the set can see and the latent emotion.
    """

    kind: str  # lld | func | xbow | deep | au
    strength: tuple[float, float, float]
    noise: float
    columns: tuple[str, ...]


def _func_columns(lld: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{name}_{stat}" for name in lld for stat in ("amean", "stddev"))


def _numbered(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


_EGEMAPS_NAMES = tuple(c[0] for c in _EGEMAPS)
_AU_NAMES = tuple(f"AU{a:02d}_r" for a in _AUS)

_SETS: dict[str, _SetSpec] = {
    # audio: arousal > valence > liking
    "egemaps": _SetSpec("lld", (0.66, 0.42, 0.06), 1.0, _EGEMAPS_NAMES),
    "egemaps-func": _SetSpec("func", (0.72, 0.46, 0.08), 1.0, EXTRACTED_COLUMNS["egemaps-func"]),
    "egemaps-xbow": _SetSpec("xbow", (0.70, 0.48, 0.08), 1.0, _numbered("egemaps_word_", 100)),
    "deepspectrum": _SetSpec("deep", (0.62, 0.40, 0.06), 1.2, _numbered("neuron_", 128)),
    "mfcc": _SetSpec("lld", (0.58, 0.36, 0.05), 1.2, _MFCC),
    "mfcc-func": _SetSpec("func", (0.62, 0.38, 0.05), 1.2, EXTRACTED_COLUMNS["mfcc-func"]),
    "mfcc-xbow": _SetSpec("xbow", (0.56, 0.34, 0.04), 1.2, _numbered("mfcc_word_", 100)),
    # video: valence > arousal > liking; the FAU sets are the best on valence
    "fau": _SetSpec("au", (0.45, 0.80, 0.10), 1.0, _AU_NAMES),
    "fau-func": _SetSpec(
        "func",
        (0.50, 0.85, 0.12),
        1.0,
        _func_columns(_AU_NAMES),
    ),
    "visual-xbow": _SetSpec("xbow", (0.42, 0.76, 0.08), 1.0, _numbered("visual_word_", 100)),
    "visual-resnet": _SetSpec("deep", (0.38, 0.70, 0.06), 1.2, _numbered("resnet_", 64)),
    "visual-vgg": _SetSpec("deep", (0.40, 0.72, 0.06), 1.2, _numbered("vgg_", 64)),
}
assert tuple(_SETS) == PAPER_FEATURE_SETS  # the folder names other modules use
assert all(_SETS[s].columns == cols for s, cols in EXTRACTED_COLUMNS.items())


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`write_synthetic_corpus` wrote.

    Attributes:
        root: the corpus root.
        scale: ``full``, ``small`` or ``tiny``.
        seed: the seed used.
        n_recordings: partition -> number of recordings.
        feature_dims: feature set -> number of columns.
        n_frames: frames over all recordings (each set has this many rows).
        bytes_written: bytes of every file written.
    """

    root: Path
    scale: str
    seed: int
    n_recordings: dict[str, int]
    feature_dims: dict[str, int]
    n_frames: int
    bytes_written: int


# ---------------------------------------------------------------------------------------
# fast CSV formatting


def _digits(values: np.ndarray, decimals: np.ndarray, sep: np.ndarray) -> np.ndarray:
    """Fixed-point text of every value as an (..., W) uint8 array, 0 = no character.

    Builds ``[-]int[.frac]<sep>`` with leading and trailing zeros marked unused, so
    ``text[text != 0]`` is the CSV. Fully vectorised: about 20x faster than np.savetxt.

    Args:
        values: (T, C) float64.
        decimals: (C,) int, decimals per column (trailing zeros are dropped).
        sep: (C,) uint8, the character after each column (';' or newline).
    """
    dec = decimals.astype(np.int64)
    p10 = 10**dec
    q = np.rint(values * p10).astype(np.int64)
    neg = q < 0
    a = np.abs(q)
    ip = a // p10
    fp = a - ip * p10
    n_int = max(1, len(str(int(ip.max())))) if ip.size else 1
    n_dec = int(dec.max()) if dec.size else 0
    out = np.zeros((*values.shape, n_int + n_dec + 3), dtype=np.uint8)
    out[..., 0] = np.where(neg, ord("-"), 0)
    for i in range(n_int):
        p = 10 ** (n_int - 1 - i)
        used = (ip >= p) if i < n_int - 1 else np.ones_like(neg)
        out[..., 1 + i] = np.where(used, 48 + (ip // p) % 10, 0)
    out[..., 1 + n_int] = np.where(fp > 0, ord("."), 0)
    for i in range(n_dec):
        p = 10 ** np.maximum(dec - 1 - i, 0)
        used = (i < dec) & (fp % (p * 10) != 0)
        out[..., 2 + n_int + i] = np.where(used, 48 + (fp // p) % 10, 0)
    out[..., -1] = sep
    return out


def _csv_bytes(
    name: str, times: np.ndarray, values: np.ndarray, decimals: np.ndarray, header: str
) -> bytes:
    """One feature file: header line, then ``'name';time;v1;...`` rows."""
    t, c = values.shape
    prefix = np.frombuffer(f"'{name}';".encode(), dtype=np.uint8)
    block = np.column_stack([times, values])
    dec = np.concatenate([[1], decimals])
    sep = np.full(c + 1, ord(";"), dtype=np.uint8)
    sep[-1] = ord("\n")
    text = _digits(block, dec, sep).reshape(t, -1)
    lines = np.concatenate([np.broadcast_to(prefix, (t, prefix.size)), text], axis=1).ravel()
    return header.encode() + lines[lines != 0].tobytes()


# ---------------------------------------------------------------------------------------
# signals


def _smooth(rng: np.random.Generator, t: int, k: int) -> np.ndarray:
    """(t, k) smooth unit-variance noise: white noise through two one-pole low-passes."""
    from scipy.signal import lfilter

    a = float(np.exp(-1.0 / _TAU))
    burn = int(6 * _TAU)
    e = rng.standard_normal((t + burn, k))
    x = lfilter([1.0], [1.0, -a], lfilter([1.0], [1.0, -a], e, axis=0), axis=0)
    return x[burn:] / np.sqrt((1 + a * a) / (1 - a * a) ** 3)


def _emotion_process(rng: np.random.Generator, t: int, chol: np.ndarray) -> np.ndarray:
    """(t, 3) correlated process: recording mean plus smooth fluctuation, unit scale."""
    rec = rng.standard_normal(3) @ chol.T * (_REC_SD / _LATENT_SD)
    fluct = _smooth(rng, t, 3) @ chol.T * (_FLUCT_SD / _LATENT_SD)
    return rec + fluct


@dataclass(frozen=True)
class _SetParams:
    """Fixed per-set parameters (the same for every recording)."""

    a: np.ndarray  # (3, H) linear mixing of the emotion view
    c: np.ndarray  # (3, H) tanh mixing
    c0: np.ndarray  # (H,)
    lin: np.ndarray  # (H,) weight of the linear part
    nl: np.ndarray  # (H,) weight of the tanh part
    g: np.ndarray  # (N_FACTORS, H) nuisance-factor loadings
    culture: dict[str, np.ndarray]  # (H,) culture offsets
    base: np.ndarray  # (C,) column unit: mean
    unit: np.ndarray  # (C,) column unit: spread
    decimals: np.ndarray  # (C,) decimals written
    columns: tuple[str, ...]


def _set_rng(seed: int, feature_set: str, *key: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, zlib.crc32(feature_set.encode()), *key])
    )


def _units(
    rng: np.random.Generator, feature_set: str, columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the offset and unit of a feature set's values (drawn after the rest)."""
    spec = _SETS[feature_set]
    n_col = len(columns)
    if feature_set == "egemaps":
        base = np.array([m for _, m, _ in _EGEMAPS])[:n_col]
        unit = np.array([s for _, _, s in _EGEMAPS])[:n_col]
    elif spec.kind == "func" and feature_set.startswith("egemaps"):
        # the LLD's own unit where the functional summarises a known LLD, else a drawn one
        by_name = {n.lower(): (m, s) for n, m, s in _EGEMAPS}
        drawn = {
            stem: (float(rng.normal(0.0, 2.0)), float(np.exp(rng.normal(0.0, 1.0))))
            for stem in sorted({_stem_stat(c)[0] for c in columns})
        }
        stem_stats = [
            by_name.get(_stem_stat(col)[0].lower(), drawn[_stem_stat(col)[0]]) for col in columns
        ]
        base = np.array([m for m, _ in stem_stats])
        unit = np.array([s for _, s in stem_stats])
    elif spec.kind == "au":
        base = rng.uniform(0.3, 1.5, n_col)
        unit = rng.uniform(0.3, 0.8, n_col)
    elif spec.kind == "deep":
        base = rng.normal(-0.2, 0.4, n_col)
        unit = np.exp(rng.normal(0.0, 0.4, n_col))
    elif spec.kind == "xbow":
        base = rng.normal(0.0, 0.6, n_col)  # log mean count
        unit = np.ones(n_col)
    else:  # mfcc-like: coefficients shrink with their index, offsets vary
        unit = np.exp(rng.normal(1.0, 0.8, n_col))
        base = rng.normal(0.0, 1.5, n_col) * unit
    return base, unit


def _decimals(kind: str, unit: np.ndarray, n_col: int) -> np.ndarray:
    """Digits written per column: counts none, AUs and deep features 3, else by unit."""
    if kind == "xbow":
        decimals = np.zeros(n_col, dtype=np.int64)
    elif kind in ("au", "deep"):
        decimals = np.full(n_col, 3, dtype=np.int64)
    else:
        decimals = np.clip(3 - np.floor(np.log10(unit)), 0, 6).astype(np.int64)
    return decimals


def _set_params(seed: int, feature_set: str, max_dim: int | None) -> _SetParams:
    spec = _SETS[feature_set]
    rng = _set_rng(seed, feature_set)
    wide = (
        max_dim is not None and len(spec.columns) > _WIDE and feature_set not in EXTRACTED_COLUMNS
    )
    columns = spec.columns[:max_dim] if wide else spec.columns
    n_col = len(columns)
    if spec.kind == "func":
        stems = {_stem_stat(c)[0] for c in columns}
        h = len(stems)  # one LLD-like source channel per functional stem
    else:
        h = n_col
    a = rng.standard_normal((3, h))
    a /= np.linalg.norm(a, axis=0, keepdims=True)
    c = rng.normal(0.0, 1.2, (3, h))
    c0 = rng.normal(0.0, 0.5, h)
    lin = rng.uniform(0.5, 1.0, h)
    nl = rng.uniform(0.2, 0.8, h)
    g = rng.normal(0.0, 0.45, (_N_FACTORS, h))
    culture = {cu: rng.normal(0.0, _CULTURE_OFFSET, h) for cu in CULTURES}
    base, unit = _units(rng, feature_set, columns)
    decimals = _decimals(spec.kind, unit, n_col)
    return _SetParams(a, c, c0, lin, nl, g, culture, base, unit, decimals, columns)


def _features(
    rng: np.random.Generator,
    feature_set: str,
    params: _SetParams,
    view: np.ndarray,
    factors: np.ndarray,
    culture: str,
) -> np.ndarray:
    """(T, C) feature values of one set for one recording.

    Args:
        view: (T, 3) what this set sees of the emotion (after its bottleneck).
        factors: (T, N_FACTORS) the recording's smooth nuisance factors.
    """
    spec = _SETS[feature_set]
    t = view.shape[0]
    h = params.a.shape[1]
    signal = params.lin * (view @ params.a) + params.nl * np.tanh(view @ params.c + params.c0)
    hidden = signal + factors @ params.g
    gain = np.exp(rng.normal(0.0, _SPEAKER_GAIN, h))  # speaker: how strongly this person shows it
    offset = rng.normal(0.0, _SPEAKER_OFFSET, h) + params.culture[culture]
    if spec.kind == "func":
        from scipy.ndimage import uniform_filter1d

        # arousal makes frames more variable, so the window std carries arousal too
        amp = spec.noise * (1.0 + 0.35 * np.tanh(view[:, :1]))
        lld = gain * hidden + offset + amp * rng.standard_normal((t, h))
        mean = uniform_filter1d(lld, _WINDOW, axis=0, mode="nearest")
        sq = uniform_filter1d(lld * lld, _WINDOW, axis=0, mode="nearest")
        sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        cols: list[np.ndarray] = []
        is_std = np.zeros(len(params.columns), dtype=bool)
        stems: dict[str, int] = {}
        for k, col in enumerate(params.columns):
            stem, stat = _stem_stat(col)
            src = stems.setdefault(stem, len(stems))
            if _is_spread(stat):
                is_std[k] = True
                cols.append(_SPREAD.get(stat, 1.0) * sd[:, src])
            else:
                cols.append(mean[:, src] + _PCT.get(stat, 0.0) * sd[:, src])
        z = np.column_stack(cols)
        # a spread is non-negative and has no offset; the other statistics share the unit
        return np.where(is_std, 0.0, params.base) + params.unit * 0.5 * z
    z = gain * hidden + offset + spec.noise * rng.standard_normal((t, h))
    if spec.kind == "xbow":
        lam = np.exp(np.clip(params.base + 0.45 * z, -6.0, 3.0))
        return rng.poisson(lam).astype(np.float64)
    if spec.kind == "deep":
        return np.maximum(params.unit * (0.6 * z + params.base), 0.0)
    if spec.kind == "au":
        return np.clip(params.base + params.unit * 0.6 * z, 0.0, 5.0)
    return params.base + params.unit * 0.5 * z


# ---------------------------------------------------------------------------------------
# the writer


def _recordings(scale: _Scale) -> list[tuple[str, str, str]]:
    """(name, partition, culture) for every recording, in a fixed order."""
    out = []
    for partition in PARTITIONS:
        for culture, n in zip(CULTURES, scale.counts[partition], strict=True):
            out += [
                (f"{partition}_{culture}_{i:02d}", partition, culture) for i in range(1, n + 1)
            ]
    return out


def _prepare_folder(root: Path) -> None:
    """Refuse a folder holding anything but an earlier synthetic corpus; clear that one.

    A stale corpus of another scale would otherwise leave extra recordings behind that
    the reader would pick up.
    """
    if not root.exists():
        root.mkdir(parents=True)
        return
    if not root.is_dir():
        raise FileExistsError(f"{root}: exists and is not a folder")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        return
    if not (root / MARKER).is_file():
        raise FileExistsError(
            f"{root}: folder is not empty and holds no synthetic corpus ({MARKER}); "
            "refusing to write into it"
        )
    for folder in (*PAPER_FEATURE_SETS, LABELS_FOLDER):
        sub = root / folder
        if not sub.is_dir():
            continue
        for f in sub.glob("*.csv"):
            f.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()


def _check_options(
    scale: str, feature_sets: Sequence[str], seed: Any, delay_frames: Any
) -> tuple[tuple[str, ...], int, int]:
    """The feature sets, seed and delay of a corpus, each checked."""
    if scale not in _SCALES:
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    sets = (feature_sets,) if isinstance(feature_sets, str) else tuple(feature_sets)
    unknown = [s for s in sets if s not in _SETS]
    if unknown or not sets or len(set(sets)) != len(sets):
        raise ValueError(
            f"feature_sets: expected distinct names among {', '.join(PAPER_FEATURE_SETS)}, "
            f"got {', '.join(sets) or 'none'}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if (isinstance(delay_frames, bool) or not isinstance(delay_frames, (int, np.integer))
            or delay_frames < 0):
        raise ValueError(f"delay_frames: expected an integer >= 0, got {delay_frames!r}")
    return sets, int(seed), int(delay_frames)


def _write_recording(
    root: Path,
    name: str,
    culture: str,
    *,
    seed: int,
    delay: int,
    sets: Sequence[str],
    params: dict[str, _SetParams],
    headers: dict[str, str],
    chol: np.ndarray,
    frames: tuple[int, int],
) -> tuple[int, int]:
    """One recording's labels and feature files; returns (frames, bytes written).

    Every draw comes from streams keyed by the seed, the recording and the set, so a
    set's files do not depend on which other sets are written.
    """
    key = zlib.crc32(name.encode())
    rng = np.random.default_rng(np.random.SeedSequence([seed, key]))
    lo, hi = frames
    t = int(rng.integers(lo, hi + 1))
    # `delay` extra latent frames at the front: label[t] = latent[t - delay]
    latent = _CULTURE_MEAN[culture] / _LATENT_SD + _emotion_process(rng, t + delay, chol)
    labels = np.clip(latent[:t] * _LATENT_SD, -1.0, 1.0)
    z = latent[delay:] - (_CULTURE_MEAN["DE"] + _CULTURE_MEAN["HU"]) / 2 / _LATENT_SD
    nuisance = {m: _emotion_process(rng, t, chol) for m in ("audio", "video")}
    factors = _smooth(rng, t, _N_FACTORS)
    times = np.arange(t) * _FRAME_S
    label_path = root / LABELS_FOLDER / f"{name}.csv"
    write_avec_csv(label_path, name, times, labels, ATTRIBUTES)
    written = label_path.stat().st_size
    for s in sets:
        spec = _SETS[s]
        srng = _set_rng(seed, s, key)
        w = np.array(spec.strength)
        shared = nuisance["audio" if s in AUDIO_FEATURE_SETS else "video"]
        own = _emotion_process(srng, t, chol)
        noise = np.sqrt(_MODALITY_SHARE) * shared + np.sqrt(1 - _MODALITY_SHARE) * own
        view = w * z + np.sqrt(1.0 - w * w) * noise
        values = _features(srng, s, params[s], view, factors, culture)
        data = _csv_bytes(name, times, values, params[s].decimals, headers[s])
        (root / s / f"{name}.csv").write_bytes(data)
        written += len(data)
    return t, written


# Just over 80 lines: 30 of them are the docstring; each recording is _write_recording.
def write_synthetic_corpus(
    out: str | Path,
    *,
    scale: str = "full",
    seed: int = 0,
    feature_sets: Sequence[str] = PAPER_FEATURE_SETS,
    progress: bool = False,
    delay_frames: int = 1,
) -> SyntheticSummary:
    """Write a synthetic AVEC 2019 CES style corpus (NOT real data; see the module doc).

    The same seed and scale give byte-identical files; a feature set's files do not
    depend on which other sets are written. Rewriting into a folder that holds an
    earlier synthetic corpus replaces it.

    Args:
        out: corpus root to create.
        scale: ``full`` (SEWA sizes), ``small`` or ``tiny`` (unit tests).
        seed: seed of every random stream.
        feature_sets: which of the 12 paper feature sets to write.
        progress: show a tqdm progress bar over recordings.
        delay_frames: annotation delay d, ``label[t] = latent[t - d]`` (1 = 0.1 s, the
            delay the paper compensates; the default corpus is unchanged by this option).

    Returns:
        What was written.

    Raises:
        ValueError: unknown scale or feature set, a negative seed or delay.
        FileExistsError: ``out`` is a non-empty folder that holds no synthetic corpus.
    """
    sets, seed, delay = _check_options(scale, feature_sets, seed, delay_frames)
    spec_scale = _SCALES[scale]
    root = Path(out).expanduser().absolute()
    _prepare_folder(root)
    params = {s: _set_params(seed, s, spec_scale.max_dim) for s in sets}
    for s in (*sets, LABELS_FOLDER):
        (root / s).mkdir(exist_ok=True)
    headers = {s: "name;frameTime;" + ";".join(params[s].columns) + "\n" for s in sets}
    chol = np.linalg.cholesky(_CORR)
    recs = _recordings(spec_scale)
    bytes_written = 0
    n_frames = 0

    iterator: Any = recs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(recs, desc=f"synthetic corpus ({scale})", unit="rec")
    for name, _, culture in iterator:
        t, written = _write_recording(
            root, name, culture, seed=seed, delay=delay, sets=sets, params=params,
            headers=headers, chol=chol, frames=spec_scale.frames,
        )  # fmt: skip
        n_frames += t
        bytes_written += written

    n_recordings = {p: sum(spec_scale.counts[p]) for p in PARTITIONS}
    feature_dims = {s: len(params[s].columns) for s in sets}
    marker = {
        "what": "SYNTHETIC data written by ser_mlflow.data.synthetic; NOT real AVEC/SEWA data",
        "generator_version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "n_recordings": n_recordings,
        "feature_dims": feature_dims,
        "n_frames": n_frames,
        "annotation_delay_frames": delay,
        "test_labels": "written (the real AVEC 2019 Test partition has no public labels)",
    }
    marker_bytes = (json.dumps(marker, indent=2) + "\n").encode()
    (root / MARKER).write_bytes(marker_bytes)
    return SyntheticSummary(
        root=root,
        scale=scale,
        seed=seed,
        n_recordings=n_recordings,
        feature_dims=feature_dims,
        n_frames=n_frames,
        bytes_written=bytes_written + len(marker_bytes),
    )
