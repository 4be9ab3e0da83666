# The learner's entry points. Every target creates what it needs (a .venv) first,
# so each works on a fresh clone with Python 3.11 and make.
# The Python that creates .venv: python3.11 if there is one. Another: make PYTHON=/path/to/python3.11
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTHON_VERSION := 3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000

.PHONY: help install serve test jupyter notebooks images preflight rehearse bench train clean

help:
	@echo "make install    create .venv with the pinned packages (the targets that need it do this first)"
	@echo "make serve      serve final_app on http://127.0.0.1:$(PORT)"
	@echo "make test       run every test: apps, notebooks (nbval), deploy contract, browser"
	@echo "make jupyter    open the lessons in Jupyter"
	@echo "make notebooks  re-execute every lesson notebook in place"
	@echo "make train      re-train final_app's model and rewrite its metadata"
	@echo "make images     regenerate every picture in images/"
	@echo "make rehearse   run the Procfile locally with honcho, as Heroku would"
	@echo "make preflight  check your last commit (what git push sends) against what Heroku will do"
	@echo "make bench      benchmark final_app against a FastAPI reference, and the batch command"
	@echo "make clean      remove .venv and the test caches"
	@echo ""
	@echo "serve and preflight use the model in MODEL_DIR=path when you give one, for example:"
	@echo "  make serve MODEL_DIR=lessons/08_own_model/models/penguins"
	@echo "  make preflight MODEL_DIR=models/mine"

# The pins install on Python 3.11 only, and final_app refuses a model saved under another
# major.minor: so check the version first (of .venv's Python, once it exists) and say how to get it.
$(STAMP): requirements.txt requirements-dev.txt
	@python="$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))"; \
	found=$$("$$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ "$$found" != "$(PYTHON_VERSION)" ]; then \
	  echo "This project needs Python $(PYTHON_VERSION), and '$${python:-python3}' is $${found:-not a Python that runs}."; \
	  echo "Install Python $(PYTHON_VERSION) one of these ways:"; \
	  echo "  pyenv install $(PYTHON_VERSION)"; \
	  echo "  conda create -n mlenv python=$(PYTHON_VERSION)   (or: conda env create -f environment.yml)"; \
	  echo "  uv python install $(PYTHON_VERSION)"; \
	  echo "  the installer from https://www.python.org/downloads/"; \
	  echo "then run make again, naming it if it is not on your PATH as python$(PYTHON_VERSION):"; \
	  echo "  make PYTHON=/path/to/python$(PYTHON_VERSION) $(or $(MAKECMDGOALS),help)"; \
	  if [ -x "$(BIN)/python" ]; then echo "(.venv was made with another Python: remove it first with make clean)"; fi; \
	  exit 1; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	@echo "final_app: http://127.0.0.1:$(PORT)  (Ctrl+C to stop)"
	GUNICORN_DEV=1 PORT=$(PORT) $(BIN)/gunicorn --config gunicorn.conf.py final_app.wsgi:app

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

# One process more than the cores shares the work (-n auto: see tests/conftest.py), each file
# staying on one, so a notebook's cells run in order; the few tests that need a single process run after them.
test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -n auto --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -p no:xdist -m serial

# Jupyter serves only files under its root folder, and the notebooks show pictures from images/:
# so the root is the repository, and JupyterLab opens on lessons/. As root (Docker, CI images)
# Jupyter refuses to start unless told --allow-root: so tell it then, and only then.
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
jupyter: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/lessons $(AS_ROOT)

notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py

train: $(STAMP)
	$(BIN)/python -m final_app.train

images: $(STAMP)
	$(BIN)/python images/make_images.py $(OUT)

# The Procfile with what a classic web dyno sets (tools/dyno.py: DYNO, WEB_CONCURRENCY,
# GUNICORN_CMD_ARGS, FORWARDED_ALLOW_IPS), except that gunicorn listens on 127.0.0.1 only
# (--bind in GUNICORN_CMD_ARGS wins over gunicorn.conf.py), so only this machine can reach it.
rehearse: REHEARSE_PORT = $(shell sed -n 's/^PORT=//p' .env)
rehearse: $(STAMP)
	@echo "Procfile under honcho: http://127.0.0.1:$(REHEARSE_PORT)  (Ctrl+C to stop)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m tools.dyno --loopback-port $(REHEARSE_PORT) $(BIN)/honcho start --env .env web

preflight: $(STAMP)
	$(BIN)/python -m tools.preflight .

bench: $(STAMP)
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/score_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
