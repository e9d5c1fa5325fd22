# Two commands that work on a fresh machine: `make run` and `make test`.
# Both create .venv and install legato with what it needs before doing their job.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install system-deps bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package definition or the C extension changes.
$(STAMP): $(PY) pyproject.toml setup.py src/legato/protocol/_speedups.c src/legato/server/_direct.c
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash tools/system-deps.sh

run: install
	$(PY) examples/chat/app.py --host 127.0.0.1 --port 8000

# The whole suite, then the parts with compiled code (protocol core, server writes,
# hub broadcast) again on the pure-Python fallback, because users without a compiler
# get that one. Separate runs: each test folder has its own conftest. The fallback's
# hub run is the memory backend's: the compiled code under test is the server's
# broadcast, the same whatever the broker (the Redis and NATS copies of the hub tests
# ran above; leaving them out here keeps CI under 15 minutes).
test: install system-deps
	$(PY) -m pytest -q -p no:cacheprovider
	LEGATO_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests/protocol
	LEGATO_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests/server
	LEGATO_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests/hub -k "not nats and not redis and not cluster"
	cd clients/js && npm ci --no-audit --no-fund && npm test

bench: install
	$(PY) bench/protocol.py

lint: install
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build src/*.egg-info src/legato/protocol/*.so src/legato/server/*.so
