# One entry point: build, test, lint, bench. Run inside a virtualenv (python3 -m venv .venv).
PY ?= python3

.PHONY: help dev build dist test test-rust test-py test-slow lint fmt typecheck bench bench-rust clean \
	fuzz fuzz-py fuzz-prop fuzz-rust miri

help:
	@echo "make dev        install the package (release build) with test and dev tools"
	@echo "make test       cargo tests + pytest (what CI runs)"
	@echo "make test-slow  everything, with the long randomised runs"
	@echo "make lint       cargo fmt --check, clippy -D warnings, ruff, mypy, stubtest"
	@echo "make fmt        cargo fmt + ruff format"
	@echo "make bench      pytest-benchmark suites in benches/"
	@echo "make dist       sdist and abi3 wheel (CPython 3.10+) in dist/"
	@echo "make fuzz       every fuzzer FUZZ_SECONDS (default 60) s, the long property profile,"
	@echo "                the Rust fuzz targets when a nightly toolchain and cargo-fuzz exist"
	@echo "make miri       the unsafe module's tests under Miri (nightly with the miri component)"

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

# Fuzzing: atheris targets of tests/fuzz (executions and coverage printed per target), the
# property tests with the long Hypothesis profile, and cargo-fuzz targets of fuzz/ on nightly.
FUZZ_SECONDS ?= 60

fuzz: fuzz-py fuzz-prop fuzz-rust

fuzz-py:
	$(PY) tests/fuzz/run.py --seconds $(FUZZ_SECONDS)

fuzz-prop:
	$(PY) -m pytest -q -p no:cacheprovider tests/test_prop_dmar.py tests/test_prop_pagetable.py \
		tests/test_prop_remapper.py tests/test_prop_platform.py --hypothesis-profile=long \
		--hypothesis-show-statistics
	PROPTEST_CASES=$$(( $(FUZZ_SECONDS) * 50 )) cargo test --quiet --test prop_walk --test prop_regs --test prop_qi

fuzz-rust:
	@if cargo +nightly fuzz --version >/dev/null 2>&1; then \
		for t in walk pagetable regs qi; do \
			cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
				2>&1 | grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|ERROR|panicked" || exit 1; \
		done; \
	else echo "fuzz-rust: no nightly toolchain with cargo-fuzz; skipped"; fi

# The unsafe module's tests under Miri's aliasing model (needs a nightly toolchain with the
# miri component: rustup +nightly component add miri rust-src). Mapped tables are skipped
# there (Miri has no madvise).
miri:
	cargo +nightly miri test --lib mem::raw
