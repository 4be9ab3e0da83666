# The learner's entry points. Every target creates what it needs (a .venv) first,
# so each works on a fresh clone with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000

.PHONY: help install serve test jupyter notebooks images preflight rehearse bench train clean

help:
	@echo "make serve      serve final_app on http://127.0.0.1:$(PORT)"
	@echo "make test       run every test: apps, notebooks (nbval), deploy contract, browser"
	@echo "make jupyter    open the lessons in Jupyter"
	@echo "make notebooks  re-execute every lesson notebook in place"
	@echo "make train      re-train final_app's model and rewrite its metadata"
	@echo "make images     regenerate every picture in images/"
	@echo "make rehearse   run the Procfile locally with honcho, as Heroku would"
	@echo "make preflight  check the repository against what Heroku will do"
	@echo "make bench      benchmark final_app against a FastAPI reference"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	@echo "final_app: http://127.0.0.1:$(PORT)  (Ctrl+C to stop)"
	GUNICORN_DEV=1 PORT=$(PORT) $(BIN)/gunicorn --config gunicorn.conf.py final_app.app:app

# axe-core, which the browser tests inject to check accessibility, comes from npm. Without npm
# the accessibility tests are skipped on a learner's machine; in CI (CI=true, as .ci/run sets) that is an error.
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  case "$$CI" in \
	    ""|0|false|False|FALSE|no) echo "npm not found: the accessibility tests will be skipped (install Node.js to run them)"; exit 0;; \
	    *) echo "npm not found and CI=$$CI: the accessibility tests cannot run (install Node.js)"; exit 1;; \
	  esac; \
	fi; \
	npm ci --prefix tests/browser --no-audit --no-fund && touch $(AXE)

# Two processes share the work (each file stays on one, so a notebook's cells run in order);
# the few tests that need a single process run after them.
test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -p no:xdist -m serial

# Jupyter serves only files under its root folder, and the notebooks show pictures from images/:
# so the root is the repository, and JupyterLab opens on lessons/.
jupyter: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/lessons

notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py

train: $(STAMP)
	$(BIN)/python -m final_app.train

images: $(STAMP)
	$(BIN)/python images/make_images.py $(OUT)

# gunicorn listens on every interface, as on a dyno; GUNICORN_CMD_ARGS (which wins over
# gunicorn.conf.py) keeps the rehearsal on 127.0.0.1, so only this machine can reach it.
rehearse: REHEARSE_PORT = $(shell sed -n 's/^PORT=//p' .env)
rehearse: $(STAMP)
	@echo "Procfile under honcho: http://127.0.0.1:$(REHEARSE_PORT)  (Ctrl+C to stop)"
	@# Loopback only; and a line per request from gunicorn, since no Heroku router is here to log it.
	GUNICORN_CMD_ARGS="--bind 127.0.0.1:$(REHEARSE_PORT) --access-logfile -" PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --env .env web

preflight: $(STAMP)
	$(BIN)/python -m tools.preflight .

bench: $(STAMP)
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
