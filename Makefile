# The two README commands: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Demo knobs (see the README): the demo corpus and the small network every demo run uses.
DEMO_DATA ?= data/synthetic-small
DEMO_SCALE ?= small
DEMO_UNITS ?= 32,16,8
DEMO_EPOCHS ?= 15
DEMO_BATCH ?= 8
DEMO_LR ?= 0.005
EXPERIMENT ?= ser-ces

.PHONY: install demo test lint bench clean

$(BIN)/ser-mlflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/ser-mlflow

$(DEMO_DATA)/labels: | $(BIN)/ser-mlflow
	$(BIN)/ser-mlflow synthesize --out $(DEMO_DATA) --scale $(DEMO_SCALE) --seed 0

# The demo: one `mlflow run . -e train`, then the chain of experiments/demo.yaml (unimodal,
# bimodal, the STL/MTL1/MTL2 comparison over 3 seeds, fusion, register), then the links.
demo: install $(DEMO_DATA)/labels
	$(BIN)/ser-mlflow init --experiment $(EXPERIMENT)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow run . -e train --env-manager local \
		--experiment-name $(EXPERIMENT) -P data_root=$(DEMO_DATA) -P feature_sets=fau \
		-P units=$(DEMO_UNITS) -P epochs=$(DEMO_EPOCHS) -P batch_size=$(DEMO_BATCH) \
		-P lr=$(DEMO_LR)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ser-mlflow main --config experiments/demo.yaml
	@echo
	@$(BIN)/ser-mlflow ui --links-only
	@echo
	@echo "Done. Next:"
	@echo "  source $(VENV)/bin/activate      # ser-mlflow and mlflow on the PATH"
	@echo "  ser-mlflow ui                    # the MLflow UI on 127.0.0.1:5000; open the links above"
	@echo "  ser-mlflow predict --model-uri models:/ser-ces@champion --data-root $(DEMO_DATA) --out out/"
	@echo "  the README, from 'Entry points' on, for every other command"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check ser_mlflow tests benchmarks tools
	$(BIN)/mypy ser_mlflow

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) mlflow.db mlartifacts mlruns data/synthetic $(DEMO_DATA)

# The README's pictures of the MLflow UI views (docs/img/*.png), taken with headless
# chromium from the demo store. The demo chain runs first; its finished steps are reused,
# so a second call only retakes the pictures.
.PHONY: screenshots
screenshots: install
	$(BIN)/ser-mlflow main --config experiments/demo.yaml
	$(BIN)/python tools/screenshots.py --out docs/img
