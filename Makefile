# alignment-unidpo: `make train` and `make test` install what they need into .venv first.
#
#   make train                                   small embedded default, offline, CPU
#   make train RECIPE=llama3-8b-base-v0.2        a paper run (accelerate + ZeRO-3, 8 GPUs)
#   make train RECIPE=... ACCELERATE=zero3_offload NUM_PROCESSES=4 ARGS="--beta=3"
#   make train RECIPE=... DRY_RUN=1              print the resolved config as JSON, load nothing
#   make test                                    the test suite (CPU, offline)
#   make bench                                   speed/memory of the speed-ups vs the plain path (CPU)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of this torch version installs from local disk on our machines; an
# unpinned torch would pull several GB of CUDA wheels.
TORCH_VERSION ?= 2.13.0
RECIPE ?=
ACCELERATE ?=
NUM_PROCESSES ?=
DRY_RUN ?=
ARGS ?=
STAMP := $(VENV)/.installed-$(TORCH_VERSION)

# The default run touches no hub: keep every library offline for it.
OFFLINE := $(if $(RECIPE),,HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1)

.PHONY: install train test bench clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

train: $(STAMP)
	$(OFFLINE) $(PY) -m alignment_unidpo.recipes $(RECIPE) \
		$(if $(ACCELERATE),--accelerate_config=$(ACCELERATE)) \
		$(if $(NUM_PROCESSES),--num_processes=$(NUM_PROCESSES)) \
		$(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests -q -rs

bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/bench_cpu.py $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
