"""Every tag name this project writes on runs, experiments and model versions.

One place, so that the code that writes a tag, the code (and UI views) that read it back and
a reader of DESIGN.md §5 all meet the same spelling. ``ser.*`` are ours; the ``mlflow.*``
names are MLflow's own tags that we set or read.
"""

from __future__ import annotations

# --- what a run is ---------------------------------------------------------------------
TAG_STAGE = "ser.stage"  # unimodal, bimodal, trial, search, fusion, pipeline, report, ...
TAG_STEP = "ser.step"  # the chain step a run belongs to
TAG_STEP_KEY = "ser.step_key"  # identity of a step (params, code, data): reuse key
TAG_RUN_KEY = "ser.run_key"  # identity of one child run of a step: reuse key
TAG_PARENT_STEP = "ser.parent_step"
TAG_CHILDREN = "ser.children"  # ids of a parent's children
TAG_FAILURES = "ser.failures"
TAG_REUSED_RUNS = "ser.reused_runs"
TAG_REUSED_STEP_RUN = "ser.reused_step_run"
TAG_CODE_VERSION = "ser.code_version"
TAG_FEATURE_SETS = "ser.feature_sets"
TAG_LOSS = "ser.loss"
TAG_LOSS_GROUP = "ser.loss_group"
TAG_PROTOCOL = "ser.protocol"
TAG_IN_SAMPLE = "ser.in_sample"
TAG_INTERVALS_ERROR = "ser.intervals_error"
TAG_DIGEST = "ser.data_digest"  # identity of the data root (all feature sets)
TAG_CONTENT_DIGEST = "ser.content_digest"  # sha256 of the bytes this run read
TAG_LABELS_DIGEST = "ser.labels_digest"
TAG_ERROR = "ser.error"

# --- liveness of a run (tracking.liveness) --------------------------------------------
TAG_HOST = "ser.host"
TAG_PID = "ser.pid"
TAG_PID_START = "ser.pid_start"
TAG_HEARTBEAT = "ser.heartbeat"
TAG_HEARTBEAT_EVERY = "ser.heartbeat_s"  # set when the heartbeat is renewed

# --- models, fusion and the registry ----------------------------------------------------
TAG_MODEL_INPUT = "ser.model_input"  # "raw" features or "predictions" of other systems
TAG_INPUT = "ser.input"
TAG_INPUT_RUNS = "ser.input_runs"
TAG_SKIPPED_RUNS = "ser.skipped_runs"
TAG_MODEL_NAME = "ser.model_name"
TAG_MODEL_VERSION = "ser.model_version"
TAG_MODEL_URI = "ser.model_uri"
TAG_RUN_ID = "ser.run_id"
TAG_PREVIOUS_VERSION = "ser.previous_version"
TAG_PROMOTED_AT = "ser.promoted_at"
TAG_PROMOTION_FORCED = "ser.promotion_forced"
TAG_PREVIOUS_PREFIX = "ser.previous_"  # + metric: the replaced champion's figure
TAG_PROMOTED_PREFIX = "ser.promoted_"  # + metric: the new champion's figure

# --- search (Optuna) ---------------------------------------------------------------------
TAG_OBJECTIVE = "ser.objective"
TAG_SAMPLER = "ser.sampler"
TAG_OPTUNA_STORAGE = "ser.optuna_storage"
TAG_STUDY_NAME = "ser.study_name"
TAG_SEARCH_RUN_ID = "ser.search_run_id"
TAG_TRIAL_NUMBER = "ser.trial_number"
TAG_TRIAL_STATE = "ser.trial_state"
TAG_PRUNED_EPOCH = "ser.pruned_epoch"

# --- reports and saved UI views ----------------------------------------------------------
TAG_REPORT_GROUPS = "ser.report_groups"
TAG_REPORT_PARENT = "ser.report_parent"
TAG_REPORT_RUNS = "ser.report_runs"
TAG_VIEW_KEY = "ser.view_key"
TAG_VIEW_URL = "ser.view_url"
TAG_CHART_URL = "ser.chart_url"
TAG_VIEW_KIND = "ser.view_kind"
TAG_VIEW_NAME = "ser.view_name"

# --- MLflow's own tags -------------------------------------------------------------------
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"
#: MLflow's experiment tag the 3.17 UI reads to pick the model-training or GenAI pages.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
