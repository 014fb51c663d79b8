"""Running MLflow's own server for `ui` and `server`: one launcher, its supervision, auth."""
