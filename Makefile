# worldgate: two commands for a newcomer (`make serve`, `make test`); the rest are helpers.
# Every target installs what it needs first, so a fresh clone needs only Python 3.11+, Node and npm.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The official Python x402 client with its Solana extra pins solana<0.40, which cannot share a venv
# with worldgate's solders 0.29; the Solana interop test runs it from this one.
SVM_CLIENT_VENV ?= .venv-x402-svm
SVM_CLIENT_STAMP := $(SVM_CLIENT_VENV)/.installed

.PHONY: install serve test bench lint contracts devnet clean browser

install: $(PY_STAMP) $(NODE_STAMP) $(SVM_CLIENT_STAMP)  ## .venv, anvil/solc/x402 TS client from npm, the x402[svm] client venv

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "worldgate needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[test]' \
	  || $(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error  # honours package-lock.json; `npm ci` trips on npm 11 optional platform deps
	touch $@

$(SVM_CLIENT_STAMP): $(PY_STAMP)
	test -x $(SVM_CLIENT_VENV)/bin/python || $(PYTHON) -m venv $(SVM_CLIENT_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(SVM_CLIENT_VENV)/bin/python 'x402[svm,httpx]==2.25.0' \
	  || $(SVM_CLIENT_VENV)/bin/pip install --quiet 'x402[svm,httpx]==2.25.0'
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
	$(PY) bench/paid.py $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

contracts: $(NODE_STAMP)  ## recompile the devnet contracts after editing their .sol sources
	node payments/devnet/contracts/compile.cjs

devnet: install  ## the local chains alone; prints devnet.json
	$(VENV)/bin/worldgate devnet

clean:
	rm -rf $(VENV) $(SVM_CLIENT_VENV) node_modules .worldgate .pytest_cache .ruff_cache
