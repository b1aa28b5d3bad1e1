# The everyday verbs of mlproj. `make pipeline` builds everything from a fresh clone; `make test` is what CI runs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlproj-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PATH := $(abspath $(BIN)):$(PATH)
# every verb first runs setup; `make SETUP= data` skips it (the tests do, in scratch projects that borrow .venv)
SETUP ?= setup

.PHONY: setup data data-regen data-record pipeline test notebooks lab lock readme serve serve-stop bench promote rollback serve-keys monitor shadow retrain

## setup: create .venv with the pinned stack, the project and the python3 kernel, and install wrk (quick when nothing changed)
setup: $(STAMP)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian's package): the load generator of make bench and of the bench notebook"; \
	  SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q wrk >/dev/null; }
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==25.3
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[serve,dev]"
	$(BIN)/python -m pip install -q --no-deps fastai==2.8.12   # no-deps: its metadata wants a CUDA torchvision
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

## data: materialize data/ exactly as data.dvc records it, offline
data: $(SETUP)
	@if $(BIN)/dvc checkout -q data.dvc 2>/dev/null && $(BIN)/dvc status -q data.dvc; then echo "data/ from the DVC cache"; \
	elif $(BIN)/dvc pull -q data.dvc 2>/dev/null; then echo "data/ pulled from the DVC remote"; \
	else echo "no cached or remote copy of data/: regenerating it with the deterministic collector"; \
	  $(MAKE) --no-print-directory data-regen; \
	  cp data.dvc .dvc/tmp/data.dvc.recorded; $(BIN)/dvc commit -q -f data.dvc; \
	  if ! cmp -s data.dvc .dvc/tmp/data.dvc.recorded; then \
	    echo "ERROR: the regenerated data/ differs from what data.dvc records:"; diff .dvc/tmp/data.dvc.recorded data.dvc || true; \
	    cp .dvc/tmp/data.dvc.recorded data.dvc; exit 1; fi; \
	  echo "data/ regenerated and verified against data.dvc"; fi

## data-regen: collect every raw data set in one run, as one chain: data/synthetic, data/later, each retrain batch (deterministic)
data-regen: $(SETUP)
	$(BIN)/python -m mlproj.collect --chain

## data-record: regenerate data/ and record it in data.dvc (after changing collect: params)
data-record: data-regen
	$(BIN)/dvc add -q data

## pipeline: setup, data, then every DVC stage
pipeline: data
	$(BIN)/dvc repro

## serve: TorchServe on 127.0.0.1:8080 (management :8081) with the production model (else models/mlproj.mar); keys in serve/run/key_file.json
serve: $(SETUP)
	@mar=$$($(BIN)/python -c 'from mlproj.registry import Registry; r = Registry(); v = r.production(); print(r.mar(v) if v else "models/mlproj.mar")'); \
	test -f $$mar || { echo "$$mar is missing: run make pipeline (or dvc repro export) first"; exit 1; }; \
	$(BIN)/python -m mlproj.torchserve start --mar $$mar

## promote: register models/mlproj.mar as production, and switch a running TorchServe to it (no downtime)
promote: $(SETUP)
	$(BIN)/python -m mlproj.registry promote models/mlproj.mar

## rollback: production goes back to the previous version, in the registry and in a running TorchServe
rollback: $(SETUP)
	$(BIN)/python -m mlproj.registry rollback

## serve-stop: stop the TorchServe that make serve started, and every process it started
serve-stop: $(SETUP)
	$(BIN)/python -m mlproj.torchserve stop

## serve-keys: renew the running TorchServe's inference and management keys (they expire after token_expiration_min)
serve-keys: $(SETUP)
	$(BIN)/python -m mlproj.torchserve keys

## monitor: drift of the logged traffic against the production model's training profile; exits 1 on an alert
monitor: $(SETUP)
	$(BIN)/python -m mlproj.monitor drift --log serve/run/logs/requests.jsonl --out reports/monitor

## shadow: replay the logged traffic to the candidate (models/mlproj.mar) beside production
shadow: $(SETUP)
	$(BIN)/python -m mlproj.monitor shadow --log serve/run/logs/requests.jsonl --candidate models/mlproj.mar --out reports/monitor

## retrain: collect new traffic, record it, dvc repro through both gates, export, shadow-evaluate, promote if all passed
retrain: $(SETUP)
	$(BIN)/python -m mlproj.retrain

## bench: latency in process, and wrk against TorchServe at concurrency 1-16 -> reports/benchmarks/*.json, two plots, the README's table
bench: $(SETUP)
	@test -f models/mlproj.mar || { echo "models/mlproj.mar is missing: run make pipeline (or dvc repro export) first"; exit 1; }
	$(BIN)/python -m mlproj.bench --mar models/mlproj.mar --onnx models/model.onnx --test artifacts/prepared/test.parquet --out reports/benchmarks --variants --readme nbs/index.ipynb --images nbs/images
	$(MAKE) --no-print-directory -s readme

## test: fail if nbdev-export or nbdev-clean would change a file; nbdev-test, failing if a notebook's committed outputs differ from this run; pytest
test: $(SETUP)
	@before=$$($(SUMS)); $(BIN)/nbdev-export; $(BIN)/nbdev-clean; $(MAKE) --no-print-directory -s readme; after=$$($(SUMS)); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-export, nbdev-clean or the README changed files: run them, then commit"; \
	  diff <(echo "$$before") <(echo "$$after") || true; exit 1; fi
	@$(BIN)/python -m mlproj.outputs snapshot nbs $(VENV)/.nbs-before.json
	@$(MAKE) --no-print-directory notebooks
	@$(BIN)/python -m mlproj.outputs stale nbs $(VENV)/.nbs-before.json
	$(BIN)/python -m pytest -q

## notebooks: run every notebook with its defaults and keep its outputs (tidied: mlproj.outputs), as they are committed; dvc.lock records stages whose notebooks changed in outputs alone
notebooks: $(SETUP)
	@$(BIN)/python -m mlproj.outputs pipeline-before nbs $(VENV)/.dvc-before.json
	@# One process per notebook, two at a time, as a fresh kernel runs it: nbdev-test's own pool reuses a worker for
	@# several notebooks, and one notebook's imports (fastai widens pandas' columns) would change another's outputs.
	ls nbs/*.ipynb | xargs -P 2 -n 1 $(BIN)/nbdev-test --save >/dev/null
	$(BIN)/python -m mlproj.outputs tidy nbs
	$(BIN)/nbdev-clean
	@$(BIN)/python -m mlproj.outputs recommit nbs $(VENV)/.dvc-before.json

SUMS = find nbs mlproj README.md -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha1sum

## readme: README.md from nbs/index.ipynb, its pictures' paths made relative to the root (nbdev-readme needs quarto, which cannot be installed offline)
readme: $(SETUP)
	$(BIN)/jupyter nbconvert --to markdown --stdout --log-level WARN nbs/index.ipynb | sed 's|](images/|](nbs/images/|g' > README.md.tmp && mv README.md.tmp README.md

## lab: JupyterLab on 127.0.0.1:$(LAB_PORT), no browser (as root too); open the URL with the token that it prints (README: over SSH)
LAB_PORT ?= 8888
lab: $(SETUP)
	@echo "JupyterLab on 127.0.0.1:$(LAB_PORT): open the URL with its token, printed below. From another machine: ssh -L $(LAB_PORT):127.0.0.1:$(LAB_PORT) <this host>"
	@$(BIN)/jupyter lab --notebook-dir=. --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.port_retries=0 $$( [ $$(id -u) = 0 ] && echo --allow-root || true )

## lock: re-resolve requirements.lock from pyproject.toml
lock:
	rm -rf /tmp/mlproj-lock && $(PYTHON) -m venv /tmp/mlproj-lock && /tmp/mlproj-lock/bin/pip install -q pip==25.3 && /tmp/mlproj-lock/bin/pip install -q -e ".[serve,dev]" && /tmp/mlproj-lock/bin/pip install -q --no-deps fastai==2.8.12
	(head -2 requirements.lock; /tmp/mlproj-lock/bin/pip freeze --exclude-editable) > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock
