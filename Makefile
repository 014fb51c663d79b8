# The two README commands: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Demo knobs: `make demo EPOCHS=50 FEATURE_SETS=egemaps+fau SCALE=full`
SCALE ?= full
FEATURE_SETS ?= fau
EPOCHS ?= 50
EXPERIMENT ?= ser-ces

.PHONY: install demo test lint bench clean

$(BIN)/ser-mlflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/ser-mlflow

data/synthetic/labels: | $(BIN)/ser-mlflow
	$(BIN)/ser-mlflow synthesize --out data/synthetic --scale $(SCALE) --seed 0

demo: install data/synthetic/labels
	$(BIN)/ser-mlflow init --experiment $(EXPERIMENT)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow run . -e train --env-manager local \
		--experiment-name $(EXPERIMENT) -P feature_sets=$(FEATURE_SETS) -P epochs=$(EPOCHS)
	@echo
	@echo "Done. Open the MLflow UI:"
	@echo "  $(BIN)/ser-mlflow ui        (mlflow server on 127.0.0.1:5000 for $(MLFLOW_TRACKING_URI))"
	@echo "  then browse http://127.0.0.1:5000 (experiment '$(EXPERIMENT)')"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check ser_mlflow tests benchmarks
	$(BIN)/mypy ser_mlflow

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) mlflow.db mlartifacts mlruns data/synthetic

# The README's pictures of the MLflow UI views (docs/img/*.png), taken with headless
# chromium from the demo store. The demo chain runs first; its finished steps are reused,
# so a second call only retakes the pictures.
.PHONY: screenshots
screenshots: install
	$(BIN)/ser-mlflow main --config experiments/demo.yaml
	$(BIN)/python -m ser_mlflow.browser screenshots --out docs/img
