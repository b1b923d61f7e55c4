# pdkv: the two commands of the quick start, and the steps they are made of.
#   make demo   install dependencies, build, make the default model, run it on a local
#               prefill/decode cluster (deploy/local.yaml) and check it against one process
#   make test   install dependencies, build, run the whole test suite
# Everything real happens in CMake; this file only strings the steps together.

BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= 2
CMAKE_ARGS ?=
MODEL_DIR  ?= .pdkv/models/small
PRESET     ?= small
SEED       ?= 1
PROMPT     ?= Once upon a time
MAX_TOKENS ?= 48
PDCTL       = $(BUILD)/bin/pdctl

.PHONY: all demo demo-local test deps build model clean

all: build

deps:
	./deploy/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j$(JOBS)

# model.safetensors is renamed into place last, so its presence means a complete model.
model: build
	@test -f $(MODEL_DIR)/model.safetensors || \
	    $(PDCTL) model new --preset $(PRESET) --seed $(SEED) -o $(MODEL_DIR)

# The demo: a local cluster (router, 1 prefill, 1 decode) answers a prompt; its tokens
# are checked against pdctl generate. demo-local is the one-process path alone.
demo: model
	./deploy/demo.sh $(BUILD) "$(PROMPT)" $(MAX_TOKENS)

demo-local: model
	@echo "== pdctl generate -m $(MODEL_DIR) -p \"$(PROMPT)\" (random weights: the text is noise)"
	$(PDCTL) generate -m $(MODEL_DIR) -p "$(PROMPT)" -n $(MAX_TOKENS) --seed $(SEED)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j2

clean:
	rm -rf $(BUILD)
