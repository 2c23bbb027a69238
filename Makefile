# One entry point: build, test, lint, bench. Run inside a virtualenv (python3 -m venv .venv).
PY ?= python3

.PHONY: help dev build dist test test-rust test-py test-slow lint fmt typecheck bench bench-rust clean

help:
	@echo "make dev        install the package (release build) with test and dev tools"
	@echo "make test       cargo tests + pytest (what CI runs)"
	@echo "make test-slow  everything, with the long randomised runs"
	@echo "make lint       cargo fmt --check, clippy -D warnings, ruff, mypy, stubtest"
	@echo "make fmt        cargo fmt + ruff format"
	@echo "make bench      pytest-benchmark suites in benches/"
	@echo "make dist       sdist and abi3 wheel (CPython 3.10+) in dist/"

dev:
	$(PY) -m pip install -e ".[dev]"

build:
	$(PY) -m pip install .

# The source archive and one wheel for every CPython 3.10 and newer (stable ABI), in dist/.
dist:
	$(PY) -m maturin build --release --sdist --out dist

test: test-rust test-py

test-rust:
	cargo test --quiet

test-py:
	$(PY) -m pytest -q

test-slow:
	VTDWALK_SLOW=1 $(PY) -m pytest -q -m "slow or not slow"

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(PY) -m ruff check python tests benches examples
	$(PY) -m ruff format --check python tests benches examples
	$(PY) -m mypy
	$(PY) -m mypy.stubtest vtdwalk._core --allowlist .ci/stubtest-allowlist

fmt:
	cargo fmt
	$(PY) -m ruff format python tests benches examples

typecheck:
	$(PY) -m mypy

bench:
	$(PY) -m pytest benches --benchmark-enable --benchmark-only --benchmark-columns=median,iqr,ops,rounds -q

bench-rust:
	cargo bench

clean:
	cargo clean
	rm -rf .pytest_cache .mypy_cache .ruff_cache .benchmarks
