from setuptools import find_packages, setup

# Versions are pinned so that an install next month behaves like today's.
# torch is deliberately a range that admits the CPU build 2.13.0 (installed first by the
# Makefile): an unpinned torch would pull several GB of CUDA wheels on a CPU machine.
install_requires = [
    "torch>=2.6,<2.14",
    "transformers==5.23.0",
    "accelerate==1.15.0",
    "datasets==5.2.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "huggingface-hub==2.4.0",
    "deepspeed==0.19.8",
    "pyyaml==6.0.3",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",  # the preference-world demo and training-dynamics plots (Agg backend)
    "scipy==1.17.1",  # Student-t intervals of the preference-world study (make study)
    "requests==2.34.2",  # make data's openai_judge scorer: HTTP to an OpenAI-compatible endpoint
    "pillow==13.0.0",  # image pairs (training/data.py checks, training/multimodal.py); already matplotlib's
]

# make eval SUITE=ifeval scores with lm-eval's own IFEval checkers (lm_eval.tasks.ifeval), which
# import langdetect, immutabledict and nltk. lm-eval 0.4.13 resolves beside the pins above, adding
# only packages we do not pin (evaluate, sacrebleu, rouge_score, scikit-learn, ...) and changing none.
IFEVAL = ["lm-eval==0.4.13", "langdetect==1.0.9", "immutabledict==4.3.1", "nltk==3.10.4"]

setup(
    name="alignment-unidpo",
    version="0.1.0",
    description="Uni-DPO preference optimisation with DPO and SimPO baselines, from YAML recipes",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require={
        # sentencepiece and tiktoken convert the real tokenizer files of the real-tokenizer tests
        # wandb: the paper recipes' report_to (training_configs/*.yaml); `make` installs it with the rest
        # import-linter: the import contracts of .importlinter, checked by tests/test_architecture.py
        # submitit: make sweep LAUNCHER=slurm (job arrays, dependencies; its local/debug executors in tests)
        # alpaca-eval: the AlpacaEval 2 judge (its prompt is referenced by judges/, loaded by its own loader in tests);
        # it imports pkg_resources, which setuptools 81 and newer no longer ship
        "dev": ["setuptools==80.9.0", "pytest==9.2.0", "peft==0.21.2", "tensorboard==2.21.0", "sentencepiece==0.2.3", "tiktoken==0.14.0",
                "math-verify==0.9.0", "latex2sympy2_extended==1.11.0", "wandb==0.31.0", "import-linter==2.16",
                "alpaca-eval==0.6.6", "submitit==1.5.4", *IFEVAL],
        # make eval: math answer equivalence (Table 2); latex2sympy2_extended is math-verify's parser;
        # tiktoken counts Arena-Hard answer tokens as arena-hard-auto does (cl100k_base)
        "eval": ["math-verify==0.9.0", "latex2sympy2_extended==1.11.0", "tiktoken==0.14.0", *IFEVAL],
        "peft": ["peft==0.21.2"],
        "wandb": ["wandb==0.31.0"],  # report_to: wandb
        "tensorboard": ["tensorboard==2.21.0"],  # report_to: tensorboard (event files under output_dir/runs/)
        "flash-attn": ["flash-attn"],  # GPU machines with nvcc only
    },
)
