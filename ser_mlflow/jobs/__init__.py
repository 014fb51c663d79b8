"""Use cases: one training run, sweeps, the chain, fusion, registry, reports, delay.

Each module is one job a command starts; they talk to MLflow only through ``tracking``."""
