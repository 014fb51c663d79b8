"""Optuna search over the loss weights alpha, beta, gamma; every trial a nested MLflow run.

The paper found its MTL2 weights (0.7, 0.2, 1.0) by random search over [0, 1]^3. Here a
study samples (alpha, beta, gamma) with random search, TPE (default) or NSGA-II (for the
multi-objective study over the three per-attribute devel CCCs, whose answer is a Pareto
front), trains the paper network once per trial and reports its devel CCC.

Modules, one job each: ``spec`` (settings a worker reads from the study), ``storage``
(Optuna RDB URLs, the SQLite lock), ``tickets`` (the budget as a queue of WAITING trials),
``worker`` (claims tickets, trains one nested run per trial), ``processes`` (local worker
processes), ``report`` (trial table, plots, summary) and ``run`` (the use case).

MLflow. One parent run (``ser.stage=search``) per invocation; every trial is a child run
(``ser.stage=trial``, ``mlflow.parentRunId`` = the parent) holding a complete training run.
Trial state is recorded truthfully: complete (FINISHED, ``ser.trial_state=complete``),
pruned (FINISHED with ``ser.trial_state=pruned`` and ``ser.pruned_epoch``: pruning is a
planned outcome, not an interruption, and a pruned run has no final ``devel_ccc_*`` metrics
and no model), failed (FAILED, error in ``ser.error``; the search goes on) and stale (its
worker died: failed by the Optuna heartbeat, its run marked FAILED, a retry queued).
"""
