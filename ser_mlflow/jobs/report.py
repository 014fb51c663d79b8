"""The CCC report: pooled and per-recording CCC with intervals, paired tests, figures.

Input is any set of finished runs with ``predictions/devel`` (trained, fused, imported):
the children of a parent, an MLflow filter, or run ids. Runs that differ only in their
seed form a group; a group's interval resamples recordings (stratified by culture) and
seeds together (``evaluation``). The output is a run tagged ``ser.stage=report`` holding
``report.md``, a self-contained ``report.html`` (PNGs inline), ``report_numbers.csv``
(every number in the report, plus the per-recording CCCs) and ``plots/*.png``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_mlflow import tracking
from ser_mlflow.scoring import evaluation
from ser_mlflow.tracking import runpreds
from ser_mlflow.tracking.runpreds import Gold, RunPredictions
from ser_mlflow.tracking.tags import TAG_REPORT_GROUPS, TAG_REPORT_PARENT, TAG_REPORT_RUNS

Echo = Callable[[str], None]

#: Fields that identify a system; runs equal on all of them but the seed form a group.
IDENTITY_TAGS = (tracking.TAG_STAGE, tracking.TAG_FEATURE_SETS, tracking.TAG_LOSS)
NOT_IDENTITY_PARAMS = frozenset({"seed", "experiment", "stage"})

NOTE_POOLED = (
    "**Pooled CCC** concatenates all development frames of the scope and computes one CCC: "
    "this is the number the paper (Atmaja & Akagi 2020) and the AVEC 2019 CES challenge "
    "report. **Per-recording mean** computes the CCC of each recording and averages them "
    "(every recording weighs the same; it ignores whether the recordings' levels are "
    "right relative to each other). They can differ by a lot; both are shown. Intervals "
    "are 95 % percentile bootstrap intervals over recordings, resampled within each "
    "culture, and, where a group has several runs (seeds), over those runs in the same "
    "replicate; a group's number is the mean over its runs."
)


@dataclass
class Group:
    """Runs of one system (differing only in seed)."""

    label: str
    runs: list[RunPredictions]
    stage: str = ""


@dataclass
class ReportData:
    """Everything the report computes, before rendering."""

    groups: list[Group]
    names: list[str]
    gold: Gold
    attributes: tuple[str, ...]
    scopes: list[str]
    numbers: pd.DataFrame
    per_recording: dict[str, np.ndarray]  # group -> (R, A) mean over runs
    dropped: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


# --- grouping ----------------------------------------------------------------------------


def _field(run: RunPredictions, key: str) -> str:
    if key.startswith("tags."):
        return run.tags.get(key[5:], "")
    if key.startswith("params."):
        return run.params.get(key[7:], "")
    return run.tags.get(key, run.params.get(key, ""))


def _identity(run: RunPredictions) -> dict[str, str]:
    """Identity tags and params; a ``<name>_effective`` param (logged under `mlflow run`
    beside the raw value it replaced) stands for ``<name>``, as when the run is rebuilt."""
    ident = {k: run.tags.get(k, "") for k in IDENTITY_TAGS}
    params = {k: v for k, v in run.params.items() if not k.endswith("_effective")}
    params.update({k.removesuffix("_effective"): v for k, v in run.params.items()
                   if k.endswith("_effective")})
    ident.update({f"params.{k}": v for k, v in params.items() if k not in NOT_IDENTITY_PARAMS})
    return ident


def _short(key: str) -> str:
    return key.replace("params.", "").replace("tags.", "").replace("ser.", "")


def group_runs(runs: Sequence[RunPredictions], group_by: Sequence[str] = ()) -> list[Group]:
    """Runs grouped by ``group_by`` (tag or param names), else by all but the seed.

    Labels name only what differs between groups (``STL2``, ``shift_frames=4``; the bare
    values of ``group_by`` keys), in the order the groups' first runs appear.
    """
    keys: dict[tuple[tuple[str, str], ...], list[RunPredictions]] = {}
    for r in runs:
        ident = {k: _field(r, k) for k in group_by} if group_by else _identity(r)
        keys.setdefault(tuple(sorted(ident.items())), []).append(r)
    idents = [dict(k) for k in keys]
    names = list(dict.fromkeys(k for i in idents for k in i))  # runs may log different params
    varying = [k for k in names if len({i.get(k, "") for i in idents}) > 1]
    if not group_by:
        varying = _label_keys(idents, varying)
    groups = [Group(_group_label(ident, members, varying, bool(group_by)),
                    sorted(members, key=lambda r: r.seed),
                    members[0].tags.get(tracking.TAG_STAGE, ""))
              for ident, members in zip(idents, keys.values(), strict=True)]
    _make_unique(groups)
    return groups


def _group_label(ident: Mapping[str, str], members: Sequence[RunPredictions],
                 varying: Sequence[str], by_keys: bool) -> str:
    """A group's label: what differs between the groups, else its feature sets and loss."""
    if varying:
        parts = [ident.get(k, "") if by_keys or k.removeprefix("tags.") in IDENTITY_TAGS
                 else f"{_short(k)}={ident.get(k, '')}" for k in varying]
        return " ".join(p for p in parts if p) or "?"
    label = ident.get(tracking.TAG_FEATURE_SETS) or members[0].name
    if ident.get(tracking.TAG_LOSS):
        label += f" {ident[tracking.TAG_LOSS]}"
    return label


def _make_unique(groups: Sequence[Group]) -> None:
    """Labels must be unique (they name rows, pairs and metrics): ``#2``, ``#3`` added."""
    seen: dict[str, int] = {}
    for g in groups:
        if g.label in seen:
            seen[g.label] += 1
            g.label = f"{g.label} #{seen[g.label]}"
        else:
            seen[g.label] = 1


def _label_keys(idents: Sequence[Mapping[str, str]], varying: Sequence[str]) -> list[str]:
    """The varying tags, plus only those varying params that tell apart groups the tags
    leave together (a loss tag already implies its alpha, beta, gamma)."""
    tags = [k for k in varying if k in IDENTITY_TAGS]
    params = [k for k in varying if k not in IDENTITY_TAGS]
    by_tags: dict[tuple[str, ...], list[Mapping[str, str]]] = {}
    for ident in idents:
        by_tags.setdefault(tuple(ident.get(k, "") for k in tags), []).append(ident)
    needed = [k for k in params
              if any(len({i.get(k, "") for i in same}) > 1 for same in by_tags.values())]
    return [*tags, *needed]


def parse_pairs(text: str, labels: Sequence[str]) -> list[tuple[str, str]]:
    """``"MTL2-STL2,MTL2-MTL1"`` -> pairs; labels may contain ``-`` (split where both match).

    Raises:
        ValueError: a pair whose sides are not group labels (lists the labels).
    """
    out = []
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        found = None
        for m in re.finditer(r"\s*-\s*", item):
            a, b = item[: m.start()].strip(), item[m.end():].strip()
            if a in labels and b in labels:
                found = (a, b)
                break
        if found is None:
            raise ValueError(f"pairs: {item!r} is not '<group>-<group>'; groups are "
                             f"{', '.join(labels)}")
        out.append(found)
    return out


def default_pairs(groups: Sequence[Group], score: Mapping[str, float]) -> list[tuple[str, str]]:
    """The best group against every other; each fusion group against the best non-fusion."""
    if len(groups) < 2:
        return []
    best = max(groups, key=lambda g: score[g.label]).label
    pairs = [(best, g.label) for g in groups if g.label != best]
    singles = [g for g in groups if g.stage != "fusion"]
    if singles:
        top_single = max(singles, key=lambda g: score[g.label]).label
        for g in groups:
            if g.stage == "fusion" and (g.label, top_single) not in pairs \
                    and (top_single, g.label) not in pairs:
                pairs.append((g.label, top_single))
    return pairs


# --- numbers -----------------------------------------------------------------------------


def load_runs(runs: Sequence[Any], *, labels: str | Path | None = None
              ) -> tuple[list[RunPredictions], Gold, list[str], list[str]]:
    """Predictions of every run and the gold of the recordings they all predicted.

    Returns:
        (runs, gold, recording names, names left out because some run lacks them).

    Raises:
        ValueError: runs scored against different label folders, no common recording.
    """
    loaded = [runpreds.load_predictions(r) for r in runs]
    folders = {runpreds.labels_folder(r, labels).resolve() for r in loaded}
    if len(folders) > 1:
        raise ValueError(
            "runs: the runs were scored against different labels folders "
            f"({', '.join(map(str, sorted(folders)))}); select runs of one corpus or pass "
            "--labels")
    attrs = loaded[0].attributes
    for r in loaded:
        if r.attributes != attrs:
            raise ValueError(f"run {r.run_id} ({r.name}): attributes {r.attributes} differ "
                             f"from {attrs}")
    all_names = set.union(*(set(r.preds) for r in loaded))
    common = sorted(set.intersection(*(set(r.preds) for r in loaded)))
    if not common:
        raise ValueError("runs: no development recording is predicted by every run")
    gold = runpreds.read_gold(folders.pop(), common, attrs)
    return loaded, gold, common, sorted(all_names - set(common))


def _scope_names(names: Sequence[str], gold: Gold, scope: str) -> list[str]:
    return [n for n in names if scope == "all" or gold.cultures[n] == scope]


def compute(
    groups: Sequence[Group],
    gold: Gold,
    names: Sequence[str],
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> ReportData:
    """Every number of the report, as one long table (rows: per recording, per group and
    scope, per compared pair, in that order)."""
    attrs = gold.attributes
    cultures = sorted({gold.cultures[n] for n in names})
    scopes = [*cultures, "all"] if len(cultures) > 1 else cultures
    rows: list[dict[str, Any]] = []
    preds = {g.label: [runpreds.aligned(r.preds, gold, names) for r in g.runs] for g in groups}
    golds = [gold.values[n] for n in names]
    score: dict[str, float] = {}
    per_recording: dict[str, np.ndarray] = {}
    boot = {"n_boot": n_boot, "seed": seed}
    for g in groups:
        per_run = [evaluation.per_recording_ccc(p, golds) for p in preds[g.label]]
        per_recording[g.label] = np.mean(per_run, axis=0)
        rows += _recording_rows(g, per_run, gold, names)
        for scope in scopes:
            pooled, scope_rows = _score_rows(g, preds[g.label], gold, names, scope, boot)
            rows += scope_rows
            if scope == scopes[-1]:
                score[g.label] = float(pooled.estimate[-1])
    chosen = list(pairs) if pairs is not None else default_pairs(groups, score)
    for a_label, b_label in chosen:
        for scope in scopes:
            rows += _comparison_rows((a_label, b_label), preds, gold, names, scope, boot)
    numbers = pd.DataFrame(rows)
    return ReportData(list(groups), list(names), gold, attrs, scopes, numbers, per_recording,
                      pairs=chosen)


def _recording_rows(g: Group, per_run: Sequence[np.ndarray], gold: Gold,
                    names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run, recording and attribute: that recording's CCC."""
    return [{"section": "recording", "group": g.label, "run_id": run.run_id,
             "scope": gold.cultures[n], "recording": n, "attribute": a,
             "statistic": "ccc", "estimate": pr[r, j]}
            for run, pr in zip(g.runs, per_run, strict=True)
            for r, n in enumerate(names) for j, a in enumerate(gold.attributes)]


def _scope_index(names: Sequence[str], gold: Gold, scope: str) -> list[int]:
    return [i for i, n in enumerate(names) if scope == "all" or gold.cultures[n] == scope]


def _score_rows(g: Group, preds: Sequence[Sequence[np.ndarray]], gold: Gold,
                names: Sequence[str], scope: str,
                boot: Mapping[str, int]) -> tuple[Any, list[dict[str, Any]]]:
    """(pooled interval, rows): a group's pooled and per-recording CCC with intervals."""
    idx = _scope_index(names, gold, scope)
    pooled, per_rec = evaluation.group_intervals(
        [[p[i] for i in idx] for p in preds], [gold.values[names[i]] for i in idx],
        [gold.cultures[names[i]] for i in idx], **boot)
    rows = [{"section": "score", "group": g.label, "scope": scope,
             "attribute": a, "statistic": stat,
             "estimate": iv.estimate[j], "low": iv.low[j],
             "high": iv.high[j], "n_runs": len(g.runs),
             "n_recordings": len(idx)}
            for stat, iv in (("pooled_ccc", pooled), ("per_recording_ccc_mean", per_rec))
            for j, a in enumerate([*gold.attributes, "mean"])]
    return pooled, rows


def _comparison_rows(pair: tuple[str, str], preds: Mapping[str, Sequence[Sequence[np.ndarray]]],
                     gold: Gold, names: Sequence[str], scope: str,
                     boot: Mapping[str, int]) -> list[dict[str, Any]]:
    """Rows of one pair's pooled CCC difference (interval, bootstrap and permutation p)."""
    a_label, b_label = pair
    idx = _scope_index(names, gold, scope)
    d = evaluation.paired_difference(
        [[p[i] for i in idx] for p in preds[a_label]],
        [[p[i] for i in idx] for p in preds[b_label]],
        [gold.values[names[i]] for i in idx], [gold.cultures[names[i]] for i in idx],
        n_boot=boot["n_boot"], n_perm=boot["n_boot"], seed=boot["seed"])
    return [{"section": "comparison", "group": f"{a_label} − {b_label}",
             "group_a": a_label, "group_b": b_label, "scope": scope,
             "attribute": a, "statistic": "pooled_ccc_difference",
             "estimate": d.estimate[j], "low": d.low[j], "high": d.high[j],
             "p_bootstrap": d.p_bootstrap[j],
             "p_permutation": d.p_permutation[j],
             "n_runs_a": len(preds[a_label]),
             "n_runs_b": len(preds[b_label]),
             "n_recordings": len(idx)}
            for j, a in enumerate([*gold.attributes, "mean"])]


def scope_label(scope: str, cultures: Sequence[str]) -> str:
    return "+".join(cultures) if scope == "all" else scope


# --- figures -----------------------------------------------------------------------------


def figures(data: ReportData, *, max_groups: int = 6) -> dict[str, Any]:
    """The report's PNG figures by artifact name."""
    from ser_mlflow.scoring import plots

    attrs = data.attributes
    sc = data.numbers[(data.numbers["section"] == "score")
                      & (data.numbers["statistic"] == "pooled_ccc")
                      & (data.numbers["scope"] == data.scopes[-1])]
    means = sc[sc["attribute"] == "mean"].set_index("group")["estimate"]
    mean_score = {g.label: float(means[g.label]) for g in data.groups}
    ranked = sorted(data.groups, key=lambda g: -mean_score[g.label])
    golds = [data.gold.values[n] for n in data.names]
    hex_rows = []
    for g in ranked[:max_groups]:
        preds = [np.concatenate(runpreds.aligned(r.preds, data.gold, data.names))
                 for r in g.runs]
        hex_rows.append((g.label, np.concatenate(preds), np.concatenate(golds * len(preds))))
    out = {"plots/pred_vs_gold.png": plots.pred_vs_gold(hex_rows, attrs)}
    best = ranked[0]
    run = best.runs[0]
    entries = []
    per_rec = evaluation.per_recording_ccc(runpreds.aligned(run.preds, data.gold, data.names),
                                           golds).mean(1)
    for culture in sorted({data.gold.cultures[n] for n in data.names}):
        idx = [i for i, n in enumerate(data.names) if data.gold.cultures[n] == culture]
        order = sorted(idx, key=lambda i: -per_rec[i])
        for which, i in (("best", order[0]), ("median", order[len(order) // 2]),
                         ("worst", order[-1])):
            n = data.names[i]
            gv = data.gold.values[n]
            entries.append((f"{culture} {which}: {n} (CCC {per_rec[i]:.2f})",
                            data.gold.times[n], gv, run.preds[n][: len(gv)]))
    out["plots/traces_best_median_worst.png"] = plots.ranked_traces(entries, attrs)
    pooled = {
        g.label: np.array([
            float(sc[(sc["group"] == g.label) & (sc["attribute"] == a)]["estimate"].iloc[0])
            for a in attrs])
        for g in data.groups
    }
    out["plots/ccc_per_recording.png"] = plots.recording_strip(
        data.per_recording, [data.gold.cultures[n] for n in data.names], attrs, pooled)
    return out


def trace_caption(data: ReportData) -> str:
    sc = data.numbers[(data.numbers["section"] == "score")
                      & (data.numbers["statistic"] == "pooled_ccc")
                      & (data.numbers["scope"] == data.scopes[-1])
                      & (data.numbers["attribute"] == "mean")]
    best = sc.sort_values("estimate", ascending=False)["group"].iloc[0]
    g = next(x for x in data.groups if x.label == best)
    return (f"Best, median and worst recording of each culture (by per-recording CCC, mean "
            f"over attributes) for the best group {best}, run {g.runs[0].run_id[:8]} "
            f"(seed {g.runs[0].seed or '?'}).")


# --- rendering ---------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _p(v: float) -> str:
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def score_table(data: ReportData, scope: str) -> pd.DataFrame:
    """One row per group: pooled and per-recording mean CCC [interval] per attribute."""
    df = data.numbers[(data.numbers["section"] == "score") & (data.numbers["scope"] == scope)]
    rows = []
    for g in data.groups:
        row: dict[str, Any] = {"group": g.label, "runs": len(g.runs)}
        for a in [*data.attributes, "mean"]:
            for stat, head in (("pooled_ccc", "pooled"), ("per_recording_ccc_mean", "per-rec")):
                r = df[(df["group"] == g.label) & (df["attribute"] == a)
                       & (df["statistic"] == stat)].iloc[0]
                row[f"{a} {head}"] = (f"{r['estimate']:.3f} [{r['low']:.3f}, "
                                      f"{r['high']:.3f}]")
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(data: ReportData) -> pd.DataFrame:
    df = data.numbers[data.numbers["section"] == "comparison"]
    cultures = sorted({data.gold.cultures[n] for n in data.names})
    rows = []
    for r in df.itertuples(index=False):
        d = r._asdict()
        rows.append({
            "a − b": d["group"], "scope": scope_label(d["scope"], cultures),
            "attribute": d["attribute"], "diff": f"{d['estimate']:+.3f}",
            "95% CI": f"[{d['low']:+.3f}, {d['high']:+.3f}]",
            "p (paired bootstrap)": _p(d["p_bootstrap"]),
            "p (permutation)": _p(d["p_permutation"]),
            "runs a/b": f"{int(d['n_runs_a'])}/{int(d['n_runs_b'])}",
        })
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _blocks(data: ReportData, *, title: str, inputs: str, n_boot: int,
            seed: int) -> list[tuple[str, Any]]:
    """The report as (kind, value) blocks: h1-h3, p, table (a DataFrame), img (a figure)."""
    cultures = sorted({data.gold.cultures[n] for n in data.names})
    counts = ", ".join(f"{c} {sum(data.gold.cultures[n] == c for n in data.names)}"
                       for c in cultures)
    blocks: list[tuple[str, Any]] = [
        ("h1", title),
        ("p", f"Inputs: {inputs}. {sum(len(g.runs) for g in data.groups)} runs in "
              f"{len(data.groups)} groups; {len(data.names)} development recordings ({counts}); "
              f"gold labels from `{data.gold.folder}`. Bootstrap: {n_boot} replicates, seed "
              f"{seed}; permutation test: {n_boot} random swaps per recording."),
        ("p", NOTE_POOLED),
    ]
    if data.dropped:
        blocks.append(("p", f"Left out (not predicted by every run): {', '.join(data.dropped)}."))
    groups_df = pd.DataFrame([{
        "group": g.label, "stage": g.stage, "runs": len(g.runs),
        "seeds": ",".join(r.seed for r in g.runs),
        "run ids": ", ".join(r.run_id[:8] for r in g.runs)} for g in data.groups])
    blocks += [("h2", "Groups"), ("table", groups_df), ("h2", "Development CCC")]
    for scope in reversed(data.scopes):
        blocks += [("h3", scope_label(scope, cultures)), ("table", score_table(data, scope))]
    blocks.append(("h2", "Paired comparisons (pooled CCC, same recordings)"))
    if data.pairs:
        blocks += [
            ("p", "diff = group mean pooled CCC of a minus b. The paired bootstrap draws one "
                  "recording resample for both groups (and their seeds); p is two-sided. The "
                  "permutation test swaps a and b per recording (runs paired by seed order): "
                  "it holds the runs fixed, so recordings are its only source of chance; when "
                  "seeds disagree, the bootstrap (which also resamples seeds) is the one to "
                  "trust. p-values are not corrected for the number of comparisons."),
            ("table", comparison_table(data)),
        ]
    else:
        blocks.append(("p", "Only one group: nothing to compare."))
    blocks += [
        ("h2", "Figures"),
        ("p", "Predicted against gold, every development frame (log-count hexbin; dashed: "
              "perfect agreement), best groups first."),
        ("img", "plots/pred_vs_gold.png"),
        ("p", trace_caption(data)),
        ("img", "plots/traces_best_median_worst.png"),
        ("p", "CCC of each development recording per group (mean over the group's runs), "
              "coloured by culture; bar: mean per recording; diamond: pooled."),
        ("img", "plots/ccc_per_recording.png"),
        ("p", "Every number above, plus each run's per-recording CCC: `report_numbers.csv`."),
    ]
    return blocks


def _write_blocks(blocks: Sequence[tuple[str, Any]],
                  figs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(Markdown paragraphs, HTML elements) of the blocks."""
    md, body = [], []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            level = int(kind[1])
            md.append("#" * level + " " + value)
            body.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            md.append(value)
            text = html.escape(value)
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
            text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
            body.append(f"<p>{text}</p>")
        elif kind == "table":
            md.append(_md_table(value))
            body.append(value.to_html(index=False, border=0, classes="t", escape=True))
        elif kind == "img":
            md.append(f"![{value}]({value})")
            b64 = base64.b64encode(_png(figs[value])).decode()
            body.append(f'<img alt="{html.escape(value)}" src="data:image/png;base64,{b64}">')
    return md, body


def render(data: ReportData, figs: Mapping[str, Any], *, title: str,
           inputs: str, n_boot: int, seed: int) -> tuple[str, str]:
    """(report.md, report.html): the same blocks; the HTML carries the PNGs inline."""
    blocks = _blocks(data, title=title, inputs=inputs, n_boot=n_boot, seed=seed)
    md, body = _write_blocks(blocks, figs)
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1500px;color:#222}"
        "table.t{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}"
        "table.t th,table.t td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;"
        "white-space:nowrap}table.t th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}"
        "p{max-width:1100px;line-height:1.4}"
    )
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")
    return "\n\n".join(md) + "\n", page


# --- the use case ------------------------------------------------------------------------


def metric_name(text: str) -> str:
    """A group label as an MLflow metric key part (letters, digits, ``_ - . /``)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text).replace(" ", "_")


def interval_metrics(data: ReportData) -> dict[str, float]:
    """``<group>_devel_ccc_<attr>`` with ``_ci_low``/``_ci_high`` (pooled, all cultures)."""
    df = data.numbers[(data.numbers["section"] == "score")
                      & (data.numbers["statistic"] == "pooled_ccc")
                      & (data.numbers["scope"] == data.scopes[-1])]
    out = {}
    for r in df.itertuples(index=False):
        d = r._asdict()
        key = f"{metric_name(d['group'])}_devel_ccc_{d['attribute']}"
        out[key] = float(d["estimate"])
        out[f"{key}_ci_low"] = float(d["low"])
        out[f"{key}_ci_high"] = float(d["high"])
    return out


@dataclass
class ReportResult:
    run_id: str
    data: ReportData
    markdown: str


def build(
    runs: Sequence[Any],
    *,
    labels: str | Path | None = None,
    group_by: Sequence[str] = (),
    pairs: str = "",
    n_boot: int = 2000,
    seed: int = 0,
    with_pairs: bool = True,
) -> ReportData:
    """Load the runs' predictions and compute every number (no run is opened).

    ``pairs`` empty means the default pairs; ``with_pairs=False`` skips the comparisons.
    """
    loaded, gold, names, dropped = load_runs(runs, labels=labels)
    groups = group_runs(loaded, group_by)
    chosen = parse_pairs(pairs, [g.label for g in groups]) if pairs.strip() else None
    if not with_pairs:
        chosen = []
    data = compute(groups, gold, names, pairs=chosen, n_boot=n_boot, seed=seed)
    data.dropped = dropped
    return data


def run_report(
    *,
    parent_run_id: str = "",
    filter_string: str = "",
    run_ids: Sequence[str] = (),
    labels: str | Path | None = None,
    group_by: Sequence[str] = (),
    pairs: str = "",
    n_boot: int = 2000,
    seed: int = 0,
    experiment: str = "",
    echo: Echo = print,
) -> ReportResult:
    """Build the report and log it as a ``ser.stage=report`` run.

    Everything is read and computed before the run opens, so bad input leaves no run.

    Raises:
        ValueError: bad selectors, runs without predictions, mismatching corpora, bad pairs.
    """
    if n_boot < 100:
        raise ValueError(f"n_boot: expected at least 100 replicates, got {n_boot}")
    runs = runpreds.find_runs(parent_run_id=parent_run_id, filter_string=filter_string,
                              run_ids=run_ids)
    echo(f"[report] {len(runs)} runs; reading their development predictions")
    data = build(runs, labels=labels, group_by=group_by, pairs=pairs, n_boot=n_boot,
                 seed=seed)
    inputs = (f"children of run `{parent_run_id}`" if parent_run_id
              else f"filter `{filter_string}`" if filter_string
              else f"runs {', '.join(run_ids)}")
    title = "CCC report: " + ", ".join(g.label for g in data.groups[:8]) + (
        " …" if len(data.groups) > 8 else "")
    figs = figures(data)
    md, page = render(data, figs, title=title, inputs=inputs, n_boot=n_boot, seed=seed)
    exp = experiment or tracking.experiment_name_of(runs[0].info.run_id)
    tags = {
        tracking.TAG_STAGE: "report",
        TAG_REPORT_RUNS: ",".join(r.info.run_id for r in runs)[:5000],
        TAG_REPORT_GROUPS: ",".join(g.label for g in data.groups)[:5000],
    }
    if parent_run_id:
        tags[TAG_REPORT_PARENT] = parent_run_id
    with tracking.run_context(experiment=exp, run_name="report", tags=tags) as run:
        tracking.log_params({"inputs": inputs[:500], "n_boot": n_boot, "seed": seed,
                             "pairs": pairs or "default", "group_by": ",".join(group_by)
                             or "auto", "labels": str(data.gold.folder)})
        tracking.log_text(md, "report.md")
        tracking.log_text(page, "report.html")
        tracking.log_text(data.numbers.to_csv(index=False), "report_numbers.csv")
        for name, fig in figs.items():
            tracking.log_figure(fig, name)
        tracking.log_metrics(interval_metrics(data))
        rid = run.info.run_id
    cultures = sorted({data.gold.cultures[n] for n in data.names})
    echo(f"\n[report] run {rid}: report.md, report.html, report_numbers.csv")
    echo(score_table(data, data.scopes[-1]).to_string(index=False))
    if data.pairs:
        echo("")
        cmp = comparison_table(data)
        echo(cmp[cmp["scope"] == scope_label(data.scopes[-1], cultures)].to_string(index=False))
    return ReportResult(rid, data, md)
