# regrad — the two commands of the quick start, and a few more.
#   make demo    install missing Debian packages, build, run the main job on Fashion-MNIST
#   make test    install missing Debian packages, build, run the whole test suite
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all setup build demo test bench clean

all: build

setup:
	@tools/setup-deps.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/regrad train --data fashion-mnist --model mlp:depth=2,width=256 --epochs 1

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	bench/bench_train.sh mlp

clean:
	rm -rf $(BUILD)
