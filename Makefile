# The two commands of the README: `make demo` and `make test`. Both install
# missing Debian packages (as root), configure, build, then run.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps configure build model demo test test-full test-asan clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# SmolLM2-135M (Q4_1 GGUF) for `stem eval`, into .model/ (ignored by git).
model:
	@bash scripts/get-model.sh

# Stem against dense at 16K tokens on structured input, best available backend;
# then Stem on real SmolLM2 Q/K/V (tests/fixtures/smollm2, 8K tokens), and the
# model itself on 1K tokens of Austen: perplexity and KL to dense for Stem and
# uniform top-k at block 16.
demo: build model
	$(BUILD)/tools/stem demo
	$(BUILD)/tools/stem run tests/fixtures/smollm2/layer14_q.npy tests/fixtures/smollm2/layer14_k.npy \
	  tests/fixtures/smollm2/layer14_v.npy --block-size 64 -o $(BUILD)/demo-smollm2
	$(BUILD)/tools/stem eval --tokens 1024 --cache '' \
	  --configs 'stem:b=16:k=12;uniform:b=16:k=10;xattention:b=16:tau=0.9'

# Every test; ends with one line per backend counting its conformance cases.
test: build
	@rm -f $(BUILD)/conformance-summary.txt
	@cd $(BUILD) && ctest --output-on-failure --timeout 1500; status=$$?; \
	  echo; echo "== conformance summary =="; \
	  if [ -f conformance-summary.txt ]; then cat conformance-summary.txt; \
	  else echo "conformance summary missing"; status=1; fi; exit $$status

# Opt-in longer sweep (larger N, more cases); not part of make test.
test-full: build
	STEM_TEST_LEVEL=full $(BUILD)/tests/test_conformance --summary $(BUILD)/conformance-full-summary.txt

# The CPU paths once more under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEM_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD)-asan -j$(JOBS)
	@cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 2400; \
	  status=$$?; cat conformance-summary.txt 2>/dev/null; exit $$status

clean:
	rm -rf $(BUILD) $(BUILD)-asan
