"""Predict from recordings: WAV/FLAC in, arousal/valence/liking every 100 ms out.

A user with a recording and a registered model should not need to know openSMILE or the
AVEC layout: this use case extracts the audio feature sets the model reads (with
``data.extract``, the same code as ``ser-mlflow extract``), lets the model's pyfunc apply
its own standardisation (fitted on its training frames) and label shift, and writes per
recording a CSV in the AVEC prediction format and a PNG of the attributes over time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_mlflow import tracking
from ser_mlflow.data.extract import COLUMNS, EXTRACTABLE, audio_files, run_extraction
from ser_mlflow.models.metadata import ModelMetadata
from ser_mlflow.tracking.tags import TAG_INPUT, TAG_MODEL_NAME, TAG_MODEL_URI, TAG_MODEL_VERSION

Echo = Callable[[str], None]


@dataclass(frozen=True)
class AudioPrediction:
    run_id: str
    out: Path
    recordings: list[str]
    model_version: tuple[str, str] | None


def model_feature_sets(meta: ModelMetadata, model_uri: str) -> tuple[tuple[str, ...], list[str]]:
    """(feature sets, raw input columns) of a model, refusing sets audio cannot give.

    Raises:
        ValueError: a video (or other non-audio) set, or audio columns that differ from
            what ``extract`` writes (a model trained on other columns).
    """
    columns = meta.input_columns
    sets = tuple(meta.input_feature_sets)
    not_audio = [s for s in sets if s not in EXTRACTABLE]
    if not_audio:
        raise ValueError(
            f"{model_uri}: the model reads {', '.join(not_audio)}, which cannot be extracted "
            f"from audio (extract computes {', '.join(EXTRACTABLE)})"
        )
    for s in sets:
        mine = [c.split(":", 1)[1] for c in columns if c.split(":", 1)[0] == s]
        if tuple(mine) != COLUMNS[s]:
            raise ValueError(
                f"{model_uri}: the model's {s} columns ({len(mine)}) differ from the "
                f"{len(COLUMNS[s])} that extract writes; it was trained on other features"
            )
    return sets, columns


def predict_audio(
    *,
    model_uri: str,
    audio: str | Path,
    out: str | Path = "predictions",
    experiment: str = "ser-ces",
    jobs: int = 0,
    progress: bool = False,
    echo: Echo = print,
) -> AudioPrediction:
    """Extract, predict and plot every recording of a file or folder; log a ``predict`` run.

    Raises:
        DataError: a bad recording (one line naming it); nothing is extracted then.
        ValueError: a bad model URI, or a model whose feature sets audio cannot give.
    """
    from ser_mlflow.data import write_avec_csv
    from ser_mlflow.data.extract import default_jobs
    from ser_mlflow.models.pyfunc import recordings_frame
    from ser_mlflow.scoring import plots

    infos = audio_files(audio)  # bad audio stops here, before the model loads
    version = tracking.resolve_model_version(model_uri)
    model = tracking.load_pyfunc(model_uri)
    meta = model.unwrap_python_model().meta
    sets, columns = model_feature_sets(meta, model_uri)
    n_jobs = jobs or default_jobs(len(infos))
    extracted = run_extraction(infos, sets, out=None, jobs=n_jobs, progress=progress, echo=echo)

    names = [f"{s}:{c}" for s in sets for c in COLUMNS[s]]
    order = [names.index(c) for c in columns]
    frame = recordings_frame(
        [e.info.name for e in extracted],
        [e.times for e in extracted],
        [np.hstack([e.features[s] for s in sets])[:, order] for e in extracted],
        columns,
    )
    result = model.predict(frame)
    attrs = list(meta.attributes)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # written to a fresh folder first, so the run logs these files and nothing else of out
    staging = Path(tempfile.mkdtemp(prefix="ser-predict-audio-"))
    try:
        for e in extracted:
            values = result[result["name"] == e.info.name][attrs].to_numpy(dtype=np.float64)
            write_avec_csv(staging / f"{e.info.name}.csv", e.info.name, e.times, values, attrs)
            fig = plots.emotions_over_time(e.info.name, e.times, values, attrs, source=model_uri)
            fig.savefig(staging / f"{e.info.name}.png", dpi=100)
        tags = {
            tracking.TAG_STAGE: "predict",
            tracking.TAG_FEATURE_SETS: "+".join(sets),
            TAG_MODEL_URI: model_uri,
            TAG_INPUT: "audio",
        }
        if version:
            tags.update({TAG_MODEL_NAME: version[0], TAG_MODEL_VERSION: version[1]})
        with tracking.run_context(
            experiment=experiment, run_name="predict-audio", tags=tags
        ) as run:
            tracking.log_params({"model_uri": model_uri, "audio": str(audio), "out": str(out_dir)})
            tracking.log_metrics({"audio_seconds": float(sum(i.duration_s for i in infos))})
            tracking.log_artifact_dir(staging, "predictions/audio")
        run_id = run.info.run_id
        for f in sorted(staging.iterdir()):
            shutil.copyfile(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    where = f" (version {version[1]} of {version[0]})" if version else ""
    echo(
        f"Wrote {len(extracted)} prediction CSV(s) and plot(s) to {out_dir}/ with "
        f"{model_uri}{where} from {'+'.join(sets)}; run {run_id}"
    )
    return AudioPrediction(run_id, out_dir, [e.info.name for e in extracted], version)
