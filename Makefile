# Every target calls the same scripts CI uses.
.PHONY: test lint bench demo

test:            ## install everything from scratch (idempotent) and run lint, types and the whole suite
	scripts/test

lint:            ## ruff + mypy only
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy src

bench:           ## run the benchmarks (prints tables)
	.venv/bin/python benchmarks/ingest.py
	.venv/bin/python benchmarks/datasets.py

demo:            ## install what it needs, then run a whole flywheel job on embedded defaults (flywheel demo)
	scripts/demo $(DEMO_ARGS)
