# regrad — the two commands of the quick start, and a few more.
#   make         build (the Debian packages must be there: make setup installs them)
#   make demo    install missing Debian packages, build, run the main job on Fashion-MNIST
#   make test    install missing Debian packages, build, run the whole test suite
#   make test-sanitize   the same suite under ASan, LSan and UBSan
#   make install PREFIX=DIR   the library, header, command, pkg-config file, CMake package
BUILD  ?= build
JOBS   ?= $(shell nproc)
PREFIX ?= /usr/local

.PHONY: all setup test-setup build demo test test-sanitize install bench clean

all: build

setup:
	@tools/setup-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test-setup:
	@tools/setup-deps.sh --test

# The GRA experiment in short: 20-layer sigmoid and tanh MLPs (PyTorch's default init),
# Adam, one epoch of Fashion-MNIST, GRA off and on (about 10 seconds on 2 cores once built).
demo: setup
	@$(MAKE) --no-print-directory build
	$(BUILD)/regrad experiment --depths 20 --acts sigmoid,tanh --optimizers adam --remedies off,gra

test: test-setup
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The whole suite under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer
# (the fuzz targets are sanitized builds of their own, OpenMPI's own allocations are not
# ours to check, an instrumented library is not one to install, and the seed workflow's
# ResNet50V2 and the README's and header's full epochs of Fashion-MNIST run the code the
# suite has already checked, minutes under the sanitizers: these are left to `make test`;
# the emulated CUDA kernels, whose fibers switch stacks as AddressSanitizer cannot follow,
# are not built there), then the loader's and the threads' tests under ThreadSanitizer (a
# build without the CUDA backend: those tests do not reach it).
test-sanitize: test-setup
	@cmake -S . -B $(BUILD)-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREGRAD_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-sanitize -j $(JOBS)
	cd $(BUILD)-sanitize && ctest --output-on-failure -j $(JOBS) -E '^(fuzz_|test_mpi|test_install|test_seed_workflow|example_readme_example|example_header_example)'
	@cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREGRAD_TSAN=ON -DREGRAD_CUDA=OFF >/dev/null
	@cmake --build $(BUILD)-tsan -j $(JOBS) --target test_images test_threads
	cd $(BUILD)-tsan && REGRAD_FIXTURES=$(CURDIR)/tests/fixtures REGRAD_TEST_FILTER='loader*' \
	  TSAN_OPTIONS=halt_on_error=1 tests/test_images
	cd $(BUILD)-tsan && TSAN_OPTIONS=halt_on_error=1 tests/test_threads

bench: build
	bench/bench_train.sh mlp

clean:
	rm -rf $(BUILD)
