# The two commands of the README: `make demo` and `make test`. Both install
# missing Debian packages (as root), configure, build, then run.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# OpenCL in the default build (its runtime is dlopen'd; PoCL runs it on CI).
# Where a run requires backends (STEM_TEST_REQUIRE set, as .ci/run does),
# make test requires OpenCL too.
BACKEND_FLAGS ?= -DSTEM_OPENCL=ON
ifneq ($(findstring STEM_OPENCL=ON,$(BACKEND_FLAGS)),)
ifneq ($(STEM_TEST_REQUIRE),)
test: export STEM_TEST_REQUIRE := $(STEM_TEST_REQUIRE),opencl
endif
endif

.PHONY: all deps configure build demo test test-full test-asan clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(BACKEND_FLAGS) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# Stem against dense at 16K tokens on structured input, best available backend.
demo: build
	$(BUILD)/tools/stem demo

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
