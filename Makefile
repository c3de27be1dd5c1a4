# The two commands of the README: `make demo` and `make test`. Both install
# missing Debian packages (as root), configure, build, then run.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# GPU backends in the default build (each needs only its build tool; runtimes
# are dlopen'd at run time). OpenCL runs on PoCL and Vulkan on Mesa's
# lavapipe in CI; where a run requires backends (STEM_TEST_REQUIRE set, as
# .ci/run does), make test requires OpenCL and Vulkan too.
BACKEND_FLAGS ?= -DSTEM_OPENCL=ON -DSTEM_VULKAN=ON
TEST_REQUIRE_EXTRA :=
ifneq ($(findstring STEM_OPENCL=ON,$(BACKEND_FLAGS)),)
TEST_REQUIRE_EXTRA := $(TEST_REQUIRE_EXTRA),opencl
endif
ifneq ($(findstring STEM_VULKAN=ON,$(BACKEND_FLAGS)),)
TEST_REQUIRE_EXTRA := $(TEST_REQUIRE_EXTRA),vulkan
endif
ifneq ($(STEM_TEST_REQUIRE),)
test: export STEM_TEST_REQUIRE := $(STEM_TEST_REQUIRE)$(TEST_REQUIRE_EXTRA)
endif

.PHONY: all deps configure build model demo test test-python-pip test-vulkan test-full test-asan test-tsan test-huge fuzz fuzz-long clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(BACKEND_FLAGS) $(CMAKE_FLAGS)

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

# Library, header, CMake package and stem.pc (and the stem tool) into PREFIX.
PREFIX ?= /usr/local
.PHONY: install test-packaging
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Packaging alone: exported symbols, stem.h alone, consumers of a fresh install
# (find_package, pkg-config, add_subdirectory), hidden GPU runtimes. Part of
# make test too.
test-packaging: build
	cd $(BUILD) && ctest --output-on-failure -R '^packaging_'

# Every test, each ctest within 5 minutes (the whole run within 10 on a
# quiet 2-core machine; README "Testing"); ends with one line per backend
# counting its conformance cases (one ctest per backend).
test: build
	@rm -f $(BUILD)/conformance-summary*.txt $(BUILD)/conformance-deferred*.txt
	@cd $(BUILD) && ctest --output-on-failure --timeout 300; status=$$?; \
	  echo; echo "== conformance summary =="; \
	  bash $(CURDIR)/scripts/conformance-summary.sh . || status=1; exit $$status

# `pip install ./python` in a fresh virtual environment, then the package
# used from outside the tree (needs PyPI for setuptools).
test-python-pip: deps
	bash python/tests/pip_install_check.sh

# The Vulkan backend alone (lavapipe will do), in its own build tree; a
# missing Vulkan device fails instead of skipping. make test runs it too.
test-vulkan: deps
	cmake -S . -B $(BUILD)-vulkan -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSTEM_VULKAN=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD)-vulkan -j$(JOBS)
	STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan $(BUILD)-vulkan/tests/test_conformance \
	  --summary $(BUILD)-vulkan/conformance-vulkan-summary.txt

# Opt-in longer sweep, not part of make test: the full table (more cases,
# larger N) on every backend, the emulated-device sweeps and the lower-ISA
# CPU reruns whole: everything make test leaves out (listed by name in
# $(BUILD)/conformance-deferred-*.txt after make test; README "Testing").
test-full: build
	@rm -f $(BUILD)/conformance-summary*.txt $(BUILD)/conformance-deferred*.txt
	@status=0; for b in cpu cuda opencl vulkan; do \
	  echo "== conformance, full level: $$b"; \
	  STEM_TEST_LEVEL=full STEM_TEST_ONLY=$$b $(BUILD)/tests/test_conformance \
	    --summary $(BUILD)/conformance-summary-$$b.txt || status=1; done; \
	  for isa in scalar avx2; do \
	    [ $$isa = avx2 ] && ! grep -q avx512bw /proc/cpuinfo 2>/dev/null && continue; \
	    echo "== conformance, full level: cpu with STEM_CPU_MAX_ISA=$$isa"; \
	    STEM_TEST_LEVEL=full STEM_TEST_ONLY=cpu STEM_CPU_MAX_ISA=$$isa \
	      $(BUILD)/tests/test_conformance \
	      --summary $(BUILD)/conformance-summary-cpu-$$isa.txt || status=1; done; \
	  echo; echo "== conformance summary (full) =="; \
	  bash scripts/conformance-summary.sh $(BUILD) || status=1; exit $$status

# The CPU paths once more under AddressSanitizer + UndefinedBehaviorSanitizer:
# every test, the conformance table cut to STEM_TEST_LEVEL=asan (every misuse
# case, the cheaper table cases; see tests/conformance/main.c).
test-asan: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEM_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD)-asan -j$(JOBS)
	@cd $(BUILD)-asan && STEM_TEST_LEVEL=$${STEM_TEST_LEVEL:-asan} \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 2400; \
	  status=$$?; bash $(CURDIR)/scripts/conformance-summary.sh . || status=1; exit $$status

# The threads test under ThreadSanitizer (OpenMP off: libgomp is not
# instrumented, so its own synchronisation would be reported).
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
test-tsan: deps
	cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEM_OPENMP=OFF \
	  -DSTEM_BUILD_TOOLS=OFF -DCMAKE_C_FLAGS="$(TSAN_FLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
	  $(CMAKE_FLAGS)
	cmake --build $(BUILD)-tsan -j$(JOBS) --target test_threads
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(BUILD)-tsan/tests/hardening/test_threads

# Opt-in: the huge-input test at a million tokens (about 2.5 GiB, 1-2 min
# on 2 cores; make test runs it at 131K tokens).
HUGE_TOKENS ?= 1048653
test-huge: build
	$(BUILD)/tests/hardening/test_huge $(HUGE_TOKENS)

# libFuzzer (clang) over the API validation layer and the .npy reader:
# FUZZ_SECONDS per target, starting from fuzz/corpus; new inputs go to
# $(BUILD)-fuzz/corpus-*, crashes to $(BUILD)-fuzz/crash-* (turn each into a
# file in fuzz/regressions/<target>/, see docs/hardening.md).
FUZZ_SECONDS ?= 30
FUZZ_EXTRA ?=
FUZZ_RUN = cd $(BUILD)-fuzz && mkdir -p corpus-$(1) && \
	./fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 \
	  -print_final_stats=1 -artifact_prefix=./crash-$(1)- $(FUZZ_EXTRA) \
	  corpus-$(1) $(CURDIR)/fuzz/corpus/$(1)
fuzz: deps
	cmake -S fuzz -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang $(CMAKE_FLAGS)
	cmake --build $(BUILD)-fuzz -j$(JOBS)
	$(call FUZZ_RUN,api)
	$(call FUZZ_RUN,npy)

# The documented longer run: FUZZ_LONG_SECONDS per target on every core.
FUZZ_LONG_SECONDS ?= 3600
fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_LONG_SECONDS) FUZZ_EXTRA=-fork=$(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
