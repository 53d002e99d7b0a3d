# redeye: the two commands of the README are `make demo` and `make test`; both run `setup` first.
.PHONY: setup setup-opencv build test bench bench-pipeline demo clean

# The ONNX Runtime library scripts/setup.sh fetches; tests and benches load it from here.
export ORT_DYLIB_PATH ?= $(CURDIR)/third_party/onnxruntime/libonnxruntime.so

setup:
	@bash scripts/setup.sh

# Also the OpenCV venv used to regenerate tests/fixtures/golden and by `bench` for comparison.
setup-opencv:
	@bash scripts/setup.sh opencv

build: setup
	cargo build --release --locked

# Lints first (formatting, no circle of imports in src/, clippy with warnings as errors), then
# every test against real servers.
test: setup
	cargo fmt --check
	python3 scripts/import_cycles.py
	cargo clippy --locked --all-targets -- -D warnings
	cargo nextest run --locked --no-fail-fast

# The main job on an embedded default: own Redis, RTSP cameras from clips, events on screen.
demo: build
	@bash scripts/demo.sh

bench: setup-opencv
	cargo run --release --locked -- bench vision

# Live RTSP cameras one machine sustains through `redeye run` and through an OpenCV pipeline, at
# 2 and 5 sampled fps (about 20 minutes on 2 cores; see the README's sizing section).
bench-pipeline: setup-opencv
	cargo run --release --locked -- bench pipeline

clean:
	cargo clean
	rm -rf .cache third_party
