# The two commands a user needs: `make dev` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: dev test install bench bench-quick fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	# .pyc files even where PYTHONDONTWRITEBYTECODE is set (CI, containers): no process, test or
	# replayed sandbox compiles the project's modules again.
	$(BIN)/python -m compileall -q workflows activities starter worker.py settings.py
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/followups dev

test: $(STAMP)
	$(BIN)/pytest -q

# Schemathesis from our own OpenAPI document against the real stack, far longer than the bounded
# pass inside `make test` (same seed, same checks: schemathesis.toml). FUZZ_EXAMPLES cases per operation.
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	FOLLOWUPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FOLLOWUPS_FUZZ_TIMEOUT=5400 $(BIN)/pytest -q -s tests/integration/test_fuzz.py

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
