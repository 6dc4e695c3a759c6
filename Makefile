# Every target calls the same scripts CI uses.
.PHONY: test lint bench bench-long demo

test:            ## install everything from scratch (idempotent) and run lint, types and the whole suite
	scripts/test

lint:            ## ruff + mypy only
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy src

# Benchmarks run as modules from the repository root, so they can import `tests.support`.
PY := .venv/bin/python

bench:           ## run the throughput benchmarks (prints tables; docs/benchmarks.md); tens of minutes
	$(PY) -m benchmarks.ingest
	$(PY) -m benchmarks.datasets
	$(PY) -m benchmarks.api
	$(PY) -m benchmarks.orchestration $(if $(REDIS_URL),,--embedded)
	$(PY) -m benchmarks.local_platform

bench-long:      ## the long runs: demo feasibility (~10 min) and the 30-minute soak (needs Redis)
	$(PY) -m benchmarks.demo_feasibility
	$(PY) -m benchmarks.soak

demo:            ## install what it needs, then run a whole flywheel job on embedded defaults (flywheel demo)
	scripts/demo $(DEMO_ARGS)
