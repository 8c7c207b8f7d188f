PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
WORKSPACE ?= demo-workspace
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-cache-dir --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-cache-dir -e '.[demo]'
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-cache-dir -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/vistudio --workspace $(WORKSPACE) demo
	@echo "vistudio is serving $(WORKSPACE) on http://$(HOST):$(PORT)"
	$(BIN)/vistudio --workspace $(WORKSPACE) serve --host $(HOST) --port $(PORT)

/usr/bin/chromium:
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: install Debian's 'chromium' package (browser tests will be skipped)"; \
	fi

test: $(DEVSTAMP) /usr/bin/chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python tests/face_photos.py >/dev/null  # real portraits for the face tests, cached in .cache/
	$(BIN)/python tests/caption_model.py  # the tiny captioning model of the caption tests, cached in .cache/
	VISTUDIO_TEST_POSTGRES_URL="$${VISTUDIO_TEST_POSTGRES_URL:-$$(bash scripts/pg-test-server.sh)}" \
		$(BIN)/pytest -n 2 --timeout 600 --durations=25

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

BENCHMARKS ?= browse ingest scan embed search duplicates train pipeline cli_startup detection_eval edits rotated_iou dataset_export segmentation_eval task_metrics faces text_search timeline geo albums backup metrics_overhead index_build s3_store enrich_ray

bench: $(STAMP)
	mkdir -p bench-results
	set -e; for b in $(BENCHMARKS); do \
		echo "== benchmarks/$$b.py" >&2; \
		$(BIN)/python benchmarks/$$b.py > bench-results/$$b.json; \
	done
	@echo "results (one JSON per benchmark) in bench-results/"

clean:
	rm -rf $(VENV) $(WORKSPACE)
