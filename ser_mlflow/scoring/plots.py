"""Matplotlib figures logged by the use cases (headless Agg backend, no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"arousal": "#d62728", "valence": "#1f77b4", "liking": "#2ca02c", "mean": "#222222"}


def _color(name: str, i: int) -> str:
    return COLORS.get(name, f"C{i}")


def training_curves(
    history: Sequence[Mapping[str, float]], best_epoch: int, attributes: Sequence[str]
) -> Any:
    """Devel CCC per attribute and mean per epoch, with the training loss beside it."""
    epochs = np.arange(1, len(history) + 1)
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for i, attr in enumerate([*attributes, "mean"]):
        key = f"devel_ccc_{attr}"
        ax.plot(
            epochs,
            [h[key] for h in history],
            label=attr,
            color=_color(attr, i),
            lw=2.2 if attr == "mean" else 1.4,
            ls="-" if attr == "mean" else "--",
        )
    ax.axvline(best_epoch, color="grey", lw=1, ls=":")
    ax.annotate(
        f"best epoch {best_epoch}",
        (best_epoch, ax.get_ylim()[1]),
        fontsize=8,
        ha="right",
        va="top",
        rotation=90,
        color="grey",
    )
    ax.set(xlabel="epoch", ylabel="devel CCC", title="Development CCC per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], color="#555555")
    ax_loss.set(xlabel="epoch", ylabel="weighted CCC loss", title="Training loss")
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def traces(
    recordings: Sequence[Any],
    preds: Mapping[str, np.ndarray],
    attributes: Sequence[str],
    *,
    n_recordings: int = 3,
) -> Any:
    """Predicted vs gold traces for a few devel recordings (one row each, all attributes)."""
    recs = [r for r in recordings if r.labels is not None][:n_recordings]
    fig, axes = plt.subplots(
        len(recs),
        len(attributes),
        figsize=(4 * len(attributes), 2.4 * len(recs)),
        squeeze=False,
        sharex="row",
    )
    for row, rec in enumerate(recs):
        t = rec.timestamps
        for j, attr in enumerate(attributes):
            ax = axes[row, j]
            ax.plot(t, rec.labels[:, j], color="black", lw=1.2, label="gold")
            ax.plot(t, preds[rec.name][:, j], color=_color(attr, j), lw=1.2, label="predicted")
            ax.set_title(f"{rec.name} — {attr}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(recs) - 1:
                ax.set_xlabel("time (s)")
            if j == 0:
                ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def ranking_bars(table: Any, rank_metric: str) -> Any:
    """Horizontal bars of a sweep's runs by the ranking metric, best on top."""
    df = table.sort_values(rank_metric, ascending=True)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(df) + 1.4))
    labels = df["run"].astype(str).tolist()
    ax.barh(labels, df[rank_metric], color="#4c72b0")
    for y, v in enumerate(df[rank_metric]):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set(xlabel=rank_metric.replace("_", " "), title=f"Runs ranked by {rank_metric}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def compare_bars(table: Any, attributes: Sequence[str] = ("arousal", "valence", "liking")) -> Any:
    """Grouped bars: devel CCC per attribute and mean for each loss, error bars = std."""
    cols = [*attributes, "mean"]
    x = np.arange(len(table))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, col in enumerate(cols):
        std = table[f"{col}_std"].fillna(0.0)
        ax.bar(
            x + (i - (len(cols) - 1) / 2) * width,
            table[f"{col}_mean"],
            width,
            yerr=std,
            capsize=2,
            label=col,
            color=_color(col, i),
            alpha=0.95 if col == "mean" else 0.75,
        )
    ax.set_xticks(x, table["loss"])
    ax.set(ylabel="devel CCC (mean ± std over seeds)", title="STL vs MTL losses")
    ax.axhline(0, color="black", lw=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(cols))
    fig.tight_layout()
    plt.close(fig)
    return fig


def fusion_stages(scores: np.ndarray, attributes: Sequence[str], *, title: str) -> Any:
    """CCC per attribute (and mean) versus fusion stage: the paper's Fig. 3."""
    stages = np.arange(1, scores.shape[0] + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for j, attr in enumerate(attributes):
        ax.plot(stages, scores[:, j], marker="o", label=attr, color=_color(attr, j))
    ax.plot(stages, scores.mean(axis=1), marker="s", lw=2.2, label="mean", color=_color("mean", 9))
    ax.set_xticks(stages)
    ax.set(xlabel="stage", ylabel="devel CCC", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def emotions_over_time(
    name: str, times: np.ndarray, values: np.ndarray, attributes: Sequence[str], *, source: str
) -> Any:
    """One recording's predicted attributes over time, one panel each on a shared axis."""
    fig, axes = plt.subplots(
        len(attributes), 1, figsize=(10, 1.7 * len(attributes) + 0.8), sharex=True, squeeze=False
    )
    lo = min(-1.0, float(np.min(values)) - 0.05) if values.size else -1.0
    hi = max(1.0, float(np.max(values)) + 0.05) if values.size else 1.0
    for j, attr in enumerate(attributes):
        ax = axes[j, 0]
        ax.plot(times, values[:, j], color=_color(attr, j), lw=1.4)
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_ylim(lo, hi)
        ax.set_ylabel(attr)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title(f"{name}: predicted emotion every 100 ms ({source})", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def fusion_intervals(intervals: Any, *, title: str) -> Any:
    """Fused CCC vs the best single input and the plain mean, and the two paired gains,
    each fused/gain bar with its bootstrap interval (``latefusion.FusionIntervals``)."""
    attrs = list(intervals.attributes)
    x = np.arange(len(attrs))
    fig, (ax, ax_gain) = plt.subplots(1, 2, figsize=(11, 4))
    f = intervals.fused
    ax.bar(x - 0.27, intervals.best_single, 0.27, label="best single input", color="#bbbbbb")
    ax.bar(x, intervals.mean, 0.27, label="mean of the inputs", color="#777777")
    ax.bar(x + 0.27, f[0], 0.27, label="fused (95% CI)", color="#1f77b4",
           yerr=np.abs(f[1:] - f[0]), capsize=4)  # fmt: skip
    ax.set_xticks(x, attrs)
    ax.set(ylabel="devel CCC", title="CCC")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    for off, (label, g, color) in zip(
        (-0.2, 0.2),
        (("vs best single input", intervals.gain_best, "#ff7f0e"),
         ("vs mean of the inputs", intervals.gain_mean, "#2ca02c")),
        strict=True,
    ):  # fmt: skip
        ax_gain.bar(x + off, g[0], 0.4, label=label, color=color,
                    yerr=np.abs(g[1:3] - g[0]), capsize=4)  # fmt: skip
        for j in range(len(attrs)):
            if g[1, j] <= 0.0 <= g[2, j]:
                ax_gain.annotate("CI incl. 0", (x[j] + off, g[2, j]), ha="center",
                                 va="bottom", fontsize=7)  # fmt: skip
    ax_gain.axhline(0.0, color="black", lw=0.8)
    ax_gain.set_xticks(x, attrs)
    ax_gain.set(ylabel="paired CCC gain", title="Gain of the fusion (95% CI)")
    ax_gain.legend(fontsize=8)
    ax_gain.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def pred_vs_gold(
    groups: Sequence[tuple[str, np.ndarray, np.ndarray]], attributes: Sequence[str]
) -> Any:
    """Predicted against gold per attribute (rows: groups), hexbin density of all frames.

    A scatter of ~40k frames per panel is one black blot; a log-count hexbin shows where
    the mass is, and the diagonal shows what agreement would look like.
    """
    fig, axes = plt.subplots(
        len(groups), len(attributes), figsize=(3.6 * len(attributes), 3.2 * len(groups)),
        squeeze=False,
    )
    for row, (label, pred, gold) in enumerate(groups):
        for j, attr in enumerate(attributes):
            ax = axes[row, j]
            lo = float(min(gold[:, j].min(), pred[:, j].min()))
            hi = float(max(gold[:, j].max(), pred[:, j].max()))
            ax.hexbin(gold[:, j], pred[:, j], gridsize=40, bins="log", cmap="viridis",
                      mincnt=1, extent=(lo, hi, lo, hi))
            ax.plot([lo, hi], [lo, hi], color="#d62728", lw=1, ls="--")
            ax.set_title(f"{label} — {attr}", fontsize=9)
            ax.set_xlabel("gold", fontsize=8)
            ax.set_ylabel("predicted", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


def ranked_traces(
    entries: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    attributes: Sequence[str],
) -> Any:
    """One row per (title, times, gold, pred): e.g. the best, median and worst recording."""
    fig, axes = plt.subplots(
        len(entries), len(attributes), figsize=(4.2 * len(attributes), 2.1 * len(entries)),
        squeeze=False,
    )
    for row, (title, t, gold, pred) in enumerate(entries):
        for j, attr in enumerate(attributes):
            ax = axes[row, j]
            ax.plot(t, gold[:, j], color="black", lw=1.1, label="gold")
            ax.plot(t, pred[:, j], color=_color(attr, j), lw=1.1, label="predicted")
            ax.set_title(f"{title} — {attr}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(entries) - 1:
                ax.set_xlabel("time (s)", fontsize=8)
            if row == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def recording_strip(
    per_recording: Mapping[str, np.ndarray],
    cultures: Sequence[str],
    attributes: Sequence[str],
    pooled: Mapping[str, np.ndarray],
) -> Any:
    """Per-recording CCC per group (one dot per recording, coloured by culture).

    The group's pooled CCC (diamond) and its mean per-recording CCC (bar) sit beside the
    dots: the two can differ, and the dots show how far single recordings spread.
    """
    labels = list(per_recording)
    culture_set = sorted(set(cultures))
    palette = {c: f"C{i}" for i, c in enumerate(culture_set)}
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(
        1, len(attributes), figsize=(max(4.0, 0.9 * len(labels) + 1.5) * len(attributes) / 1.6,
                                    4.2), squeeze=False,
    )
    cult = np.asarray(cultures)
    for j, attr in enumerate(attributes):
        ax = axes[0, j]
        for x, label in enumerate(labels):
            vals = per_recording[label][:, j]
            for c in culture_set:
                sel = cult == c
                jitter = rng.uniform(-0.18, 0.18, sel.sum())
                ax.scatter(x + jitter, vals[sel], s=12, alpha=0.7, color=palette[c],
                           label=c if x == 0 else None)
            ax.hlines(vals.mean(), x - 0.3, x + 0.3, color="black", lw=1.5,
                      label="mean per recording" if x == 0 else None)
            ax.scatter([x + 0.34], [pooled[label][j]], marker="D", s=30, color="#d62728",
                       zorder=3, label="pooled" if x == 0 else None)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{attr}: CCC per recording", ylabel="devel CCC")
        ax.axhline(0, color="grey", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
        if j == 0:
            ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    plt.close(fig)
    return fig


def delay_curve(
    delays_s: Sequence[float],
    scores: np.ndarray,
    columns: Sequence[str],
    *,
    title: str,
    estimates: Mapping[str, float] | None = None,
) -> Any:
    """Devel CCC per attribute (and mean) against the label delay in seconds.

    The optimum of each curve is marked; ``estimates`` (name -> seconds) are drawn as
    vertical lines, e.g. a linear baseline's best lag beside the swept optimum.
    """
    x = np.asarray(delays_s, dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for j, name in enumerate(columns):
        y = scores[:, j]
        ax.plot(x, y, marker="o", ms=3.5, label=name, color=_color(name, j),
                lw=2.2 if name == "mean" else 1.4)
        if np.isfinite(y).any():
            k = int(np.nanargmax(y))
            ax.scatter([x[k]], [y[k]], s=80, facecolors="none", edgecolors=_color(name, j),
                       lw=1.6, zorder=3)
            ax.annotate(f"{x[k]:.1f} s", (x[k], y[k]), textcoords="offset points",
                        xytext=(4, 6), fontsize=7, color=_color(name, j))
    for i, (name, sec) in enumerate((estimates or {}).items()):
        ax.axvline(sec, color="grey", lw=1, ls=[":", "--", "-."][i % 3], label=name)
    ax.set(xlabel="label shift / annotation delay (s)", ylabel="devel CCC", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    plt.close(fig)
    return fig
