"""Configuration dataclasses.

A run is described by four dataclasses whose fields share one flat namespace, so that
a recipe YAML or a ``--key=value`` override never needs to say which class a key
belongs to (see :mod:`alignment_unidpo.resolve`):

* :class:`ModelArguments`: policy, reference model, tokenizer, LoRA;
* :class:`DataArguments`: the dataset mixture and the eval split;
* :class:`UniDPOConfig`: ``transformers.TrainingArguments`` plus the loss and
  tokenisation hyper-parameters (paper Tables C.1 and C.3);
* :class:`LaunchArguments`: how ``accelerate launch`` starts the run.

:data:`LOSS_TYPES` is the loss table: what each ``loss_type`` is (its function, reference,
log-prob reduction, the recipe keys it reads, its implicit reward). Everything that depends
on the loss type reads it there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from transformers import TrainingArguments

from .base.values import finite_number, first_bad_value, is_integer, rules_by_key

PERF_WEIGHTS = ("stabilized", "focal", "none")  # perf_weight: Eq. (10), Eq. (7), off (training.losses)
TRUNCATION_RULES = ("fit", "authors")  # truncation_rule (training.tokenization.truncate_pair)
SYSTEM_TURNS = ("prompt", "authors")  # system_turn (training.tokenization.render_pair)
# tau_good: median in a recipe: the paper's rule (Table C.1), the median chosen score of the training
# pairs. resolve keeps the rule beside the training config (ResolvedRecipe.tau_good_rule), whose
# tau_good is TAU_GOOD_AT_LOAD until training.run computes the number from the loaded pairs and
# builds the config the trainer gets with it (ResolvedRecipe.with_tau_good).
TAU_GOOD_MEDIAN = "median"
TAU_GOOD_RULES = {TAU_GOOD_MEDIAN: "median (computed from the training data at load time)"}  # rule -> dry-run text
TAU_GOOD_AT_LOAD = math.nan  # tau_good of a config whose rule has not met the training pairs yet


# --- The loss table ---------------------------------------------------------------------
# configs is below training (.importlinter), so an entry names its function in
# training.losses rather than importing it; training.losses.function_of resolves the name.
# Adding a loss type: one entry here, its function in training.losses, and its test.

def reference_ratio_margin(pi_w, pi_l, ref_w, ref_l, beta: float):
    """``beta*((pi_w - ref_w) - (pi_l - ref_l))``: the implicit reward margin of DPO (Eq. 1) and
    Uni-DPO (Eq. 20), the reward ``beta*(pi - ref)`` of the chosen minus the rejected answer."""
    return beta * ((pi_w - ref_w) - (pi_l - ref_l))


def policy_margin(pi_w, pi_l, ref_w, ref_l, beta: float):
    """``beta*(pi_w - pi_l)``: SimPO's reward margin, the reward ``beta*pi`` needing no reference
    (``ref_w`` and ``ref_l`` are not read)."""
    return beta * (pi_w - pi_l)


# recipe keys every loss type that compares with a reference reads (where its log-probs come from)
REFERENCE_KEYS = ("ref_model_name_or_path", "precompute_ref_log_probs", "ref_logps_cache_dir",
                  "precompute_ref_batch_size")


@dataclass(frozen=True)
class LossType:
    """One loss type of the table, as plain data.

    Its function is called on per-pair log-probs of the chosen and rejected answers, reduced
    over the completion tokens as :meth:`averages` says: ``function(pi_w, pi_l[, ref_w, ref_l]
    [, score_chosen, score_rejected], **kwargs_from(config))``, the reference's log-probs when
    ``needs_reference``, the pair's scores when ``needs_scores``.
    """

    name: str
    title: str  # what it is, for --help
    function: str  # the name of its function in alignment_unidpo.training.losses
    arguments: Mapping[str, str]  # recipe key -> keyword argument of the function
    needs_reference: bool  # compares with a frozen reference (and reads REFERENCE_KEYS)
    needs_scores: bool  # reads the pairs' scores (a pair without them is refused at load)
    averaged: bool | str  # log-probs averaged over the completion tokens (True) or summed; a key: that switch decides
    reward_margin: Callable  # its implicit reward margin: (pi_w, pi_l, ref_w, ref_l, beta) -> margin

    @property
    def reads(self) -> tuple[str, ...]:
        """The recipe keys it reads: its arguments, its reduction switch, the reference's keys."""
        switch = (self.averaged,) if isinstance(self.averaged, str) else ()
        return (*self.arguments, *switch, *(REFERENCE_KEYS if self.needs_reference else ()))

    def averages(self, config) -> bool:
        """Whether it works on averaged (length-normalised) log-probs under ``config``, else summed."""
        return bool(getattr(config, self.averaged)) if isinstance(self.averaged, str) else self.averaged

    def kwargs_from(self, config, **resolved: Any) -> dict[str, Any]:
        """Its function's keyword arguments from ``config``; ``resolved`` replaces the values of
        recipe keys the caller has worked out (e.g. the trainer's ``nll_ref_gap_tolerance``)."""
        return {arg: resolved[key] if key in resolved else getattr(config, key) for key, arg in self.arguments.items()}


def _same_names(*keys: str) -> dict[str, str]:
    return {key: key for key in keys}


LOSS_TYPES: dict[str, LossType] = {
    "uni_dpo": LossType(
        name="uni_dpo", title="Uni-DPO (Eq. 4)", function="uni_dpo_loss",
        arguments=_same_names("beta", "qual_eta", "perf_gamma", "tau_ref", "nll_lambda", "tau_good",
                              "use_quality_weight", "perf_weight", "nll_require_ref_gap", "nll_require_good_score",
                              "nll_ref_gap_tolerance"),
        needs_reference=True, needs_scores=True, averaged="length_normalize", reward_margin=reference_ratio_margin,
    ),
    "dpo": LossType(
        name="dpo", title="DPO (Eq. 1)", function="dpo_loss", arguments=_same_names("beta", "label_smoothing"),
        needs_reference=True, needs_scores=False, averaged="dpo_average_logps", reward_margin=reference_ratio_margin,
    ),
    "simpo": LossType(
        name="simpo", title="SimPO (Meng et al., 2024)", function="simpo_loss",
        arguments={"beta": "beta", "simpo_gamma_beta_ratio": "gamma_beta_ratio", "label_smoothing": "label_smoothing"},
        needs_reference=False, needs_scores=False, averaged=True, reward_margin=policy_margin,
    ),
}


def loss_of(config) -> LossType:
    """The table's entry for ``config.loss_type``."""
    return LOSS_TYPES[config.loss_type]


def check_truncation_rule(rule: str) -> None:
    """Raise ValueError unless ``rule`` is one of :data:`TRUNCATION_RULES`."""
    if rule not in TRUNCATION_RULES:
        raise ValueError(f"truncation_rule must be one of {TRUNCATION_RULES}, got {rule!r}")


def check_system_turn(system_turn: str, label_assistant_header: bool) -> None:
    """Raise ValueError unless ``system_turn`` is one of :data:`SYSTEM_TURNS` and, when it is
    ``authors``, ``label_assistant_header`` is true (the authors' answer is the whole assistant
    turn rendered on its own, header included)."""
    if system_turn not in SYSTEM_TURNS:
        raise ValueError(f"system_turn must be one of {SYSTEM_TURNS}, got {system_turn!r}")
    if system_turn == "authors" and not label_assistant_header:
        raise ValueError("system_turn: authors needs label_assistant_header: true (the authors render each answer "
                         "as a whole assistant turn on its own, header included)")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="toy:tiny-llama",
        metadata={"help": "Hub id or local path of the policy; 'toy:<name>' builds a tiny model offline."},
    )
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Frozen reference model; defaults to model_name_or_path."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Defaults to the model's."})
    chat_template: str | None = field(
        default=None, metadata={"help": "Jinja chat template replacing the tokenizer's own."}
    )
    torch_dtype: str = field(default="bfloat16", metadata={"help": "bfloat16, float16, float32 or auto."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "flash_attention_2, sdpa or eager (Gemma-2 needs eager); packed_varlen (ours, "
                          "alignment_unidpo.training.packed_attention): with padding_free, each packed sequence attended on "
                          "its own, no [L x L] mask."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the model repo's own Python code."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters; the reference is the base model."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names for LoRA; default: all linear layers."}
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "With use_peft: after training also write output_dir/merged, the adapter merged into "
                          "the base (a full safetensors model for AutoModelForCausalLM; CPU memory: the whole model)."},
    )

    def __post_init__(self):
        if self.merge_lora and not self.use_peft:
            raise ValueError("merge_lora: true needs use_peft: true (there is no adapter to merge)")


@dataclass
class DataArguments:
    dataset_mixture: list[dict[str, Any]] = field(
        default_factory=lambda: [{"path": "data/toy_preferences_text.jsonl"}, {"path": "data/toy_preferences_chat.jsonl"}],
        metadata={
            "help": "Sources to mix. Each entry: path (hub id, local json/jsonl/parquet file or folder), "
            "optional data_files, name (hub config), split (default 'train'), fraction (default 1.0)."
        },
    )
    eval_dataset_mixture: list[dict[str, Any]] | None = field(
        default=None, metadata={"help": "Eval sources, same format; else test_split_size carves one."}
    )
    test_split_size: float | int = field(
        default=0, metadata={"help": "Fraction (<1) or number of rows held out for eval when no eval data is given."}
    )
    apply_chat_template: bool = field(
        default=True,
        metadata={"help": "False: prompts are already templated strings and answers are used as written "
                          "(EOS appended), as in the authors' math data."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message put before every prompt that has none."}
    )
    preprocessing_num_workers: int = field(default=1, metadata={"help": "Processes for tokenising (> 1000 rows)."})
    # How pairs are tokenised (alignment_unidpo.training.tokenization); README "Fidelity to the authors' runs".
    label_assistant_header: bool = field(
        default=False,
        metadata={"help": "Label the template's assistant header (e.g. Llama-3 '<|start_header_id|>assistant"
                          "<|end_header_id|>\\n\\n', Gemma-2 '<start_of_turn>model\\n') as part of each answer, "
                          "as the Uni-DPO authors do; false: only the answer is labelled (TRL)."},
    )
    append_eos: bool = field(
        default=False,
        metadata={"help": "Append the tokenizer's EOS id to every answer that does not end with it (authors' "
                          "trl-0.9.6 convention, e.g. Gemma-2 answers end '<end_of_turn>\\n<eos>')."},
    )
    truncation_rule: str = field(
        default="fit",
        metadata={"help": "fit: answers are cut to what fits after the prompt, prompts longer than max_length "
                          "are dropped; authors: answers are cut to max_length - max_prompt_length and no prompt "
                          "is dropped (prompts cut from the left to max_prompt_length in both)."},
    )
    bos_for_plain_prompts: bool = field(
        default=True,
        metadata={"help": "With apply_chat_template=false, put the tokenizer's BOS before prompts that lack it."},
    )
    eos_as_bos: bool = field(
        default=False,
        metadata={"help": "The BOS put before plain prompts is the EOS token (authors' math runs on Qwen2.5-Math, "
                          "whose tokenizer has no BOS: '<|endoftext|>')."},
    )
    plain_answer_suffix: str | None = field(
        default=None,
        metadata={"help": "With apply_chat_template=false, text appended to answers that lack it, before the EOS "
                          "(authors' math runs: '<|im_end|>', so answers end '<|im_end|><|endoftext|>')."},
    )
    system_turn: str = field(
        default="prompt",
        metadata={"help": "Where a chat template's default system turn goes (e.g. Qwen2.5's 'You are Qwen, created "
                          "by Alibaba Cloud. ...'). prompt: the conversation is rendered once, so the template's "
                          "system turn is in the unlabelled prompt, once. authors: as the Uni-DPO authors' "
                          "run_uni_dpo.py (trl's maybe_insert_system_message): an empty system turn is put before "
                          "a conversation without one when the template mentions 'system', and each answer is "
                          "rendered on its own, so Qwen2.5's default system turn is in every labelled answer and "
                          "counts toward max_length. Needs label_assistant_header: true; no change for Llama-3 or "
                          "Gemma-2 templates; ignored with apply_chat_template=false."},
    )

    def __post_init__(self):
        check_truncation_rule(self.truncation_rule)
        check_system_turn(self.system_turn, self.label_assistant_header)


@dataclass
class LaunchArguments:
    accelerate_config: str = field(
        default="zero3", metadata={"help": "Name in accelerate_configs/ or a path to an accelerate YAML."}
    )
    num_processes: int = field(
        default=8, metadata={"help": "Processes (GPUs) in total over all machines (accelerate's convention)."}
    )
    num_machines: int = field(
        default=1, metadata={"help": "Machines (nodes) the run spans; each runs num_processes / num_machines."}
    )
    machine_rank: int = field(
        default=0, metadata={"help": "This machine's rank, 0 .. num_machines - 1 (SLURM: $SLURM_NODEID)."}
    )
    main_process_ip: str | None = field(
        default=None, metadata={"help": "Address of the machine of rank 0, the rendezvous host (multi-node only)."}
    )
    main_process_port: int | None = field(
        default=None, metadata={"help": "Rendezvous port on the rank-0 machine; null: accelerate's 29500."}
    )

    def check(self) -> None:
        """Raise ValueError when the machines and processes do not fit together."""
        if self.num_processes % self.num_machines:
            raise ValueError(
                f"num_processes={self.num_processes} (the total over all machines) is not a multiple of "
                f"num_machines={self.num_machines}; every machine runs the same number of processes"
            )
        if not 0 <= self.machine_rank < self.num_machines:
            raise ValueError(f"machine_rank={self.machine_rank} must be in [0, num_machines={self.num_machines})")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError(
                f"num_machines={self.num_machines} needs main_process_ip, the address of the machine of rank 0 "
                "(every machine passes the same one)"
            )

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines


@dataclass
class UniDPOConfig(TrainingArguments):
    """TrainingArguments plus the preference-optimisation hyper-parameters.

    Defaults are the paper's textual setting (Table C.1) where one exists.
    """

    loss_type: str = field(
        default="uni_dpo", metadata={"help": "; ".join(f"{e.name}: {e.title}" for e in LOSS_TYPES.values()) + "."}
    )
    beta: float = field(default=2.0, metadata={"help": "Reward scale beta (Eq. 1, 10, 20)."})
    qual_eta: float = field(default=0.7, metadata={"help": "eta of the quality weight, Eq. (5)."})
    perf_gamma: float = field(default=3.0, metadata={"help": "gamma of the performance weight, Eq. (10)."})
    tau_ref: float = field(default=0.8, metadata={"help": "Margin tau_ref of the performance weight, Eq. (10)."})
    nll_lambda: float = field(default=0.001, metadata={"help": "lambda of the calibrated NLL, Eq. (4)."})
    tau_good: float = field(
        default=3.2,
        metadata={"help": "Score threshold of the calibrated NLL, Eq. (11). A recipe may write 'median': the paper's "
                          "rule, the median chosen score of the training data, computed at load time (and logged)."},
    )
    length_normalize: bool = field(
        default=True, metadata={"help": "Uni-DPO on per-token averaged log-probs (off: the 'w/o LN' ablation)."}
    )
    dpo_average_logps: bool = field(
        default=False, metadata={"help": "DPO on per-token averaged log-probs (LLaMA-Factory's dpo_average_log_prob, "
                                         "the authors' multimodal DPO baseline); off: summed, paper Eq. (1)."}
    )
    use_quality_weight: bool = field(default=True, metadata={"help": "Off: the 'w/o w_qual' ablation."})
    perf_weight: str = field(
        default="stabilized", metadata={"help": "stabilized (Eq. 10), focal (Eq. 7) or none ('w/o w_perf')."}
    )
    nll_require_ref_gap: bool = field(default=True, metadata={"help": "Indicator I of Eq. (11)."})
    nll_require_good_score: bool = field(default=True, metadata={"help": "Indicator II of Eq. (11)."})
    nll_ref_gap_tolerance: float | None = field(
        default=None,
        metadata={"help": "tau_in of indicator I: the c-NLL fires when ref_w - pi_w > tau_in * max(1, |ref_w|). "
                          "null: tied to the precision of the log-probs (1e-5 in float32, 1e-2 in bf16/fp16); "
                          "0: the strict indicator of Eq. (11), as in the authors' code."},
    )
    simpo_gamma_beta_ratio: float = field(default=0.5, metadata={"help": "SimPO margin / beta."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Conservative DPO / SimPO smoothing."})
    max_length: int = field(default=2048, metadata={"help": "Longest prompt + completion, in tokens."})
    max_prompt_length: int = field(default=1800, metadata={"help": "Prompts are cut from the left to this."})
    global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Pairs per optimizer step over all processes; sets gradient_accumulation_steps."},
    )
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Warm-up as a fraction of all steps (sets warmup_steps)."}
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probs once before training (cached on disk) and train "
                          "with no reference model loaded."},
    )
    ref_logps_cache_dir: str | None = field(
        default="~/.cache/alignment_unidpo/ref_logps",
        metadata={"help": "Where precomputed reference log-probs are kept for later runs; null: memory only."},
    )
    precompute_ref_batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per device when precomputing (default per_device_eval_batch_size)."}
    )
    lean_logps: bool = field(
        default=False,
        metadata={"help": "Send only completion tokens through the output layer, in checkpointed chunks, "
                          "instead of materialising [tokens x vocab] float32 logits."},
    )
    logps_chunk_size: int = field(default=512, metadata={"help": "Tokens per output-layer chunk with lean_logps."})
    padding_free: bool = field(
        default=False,
        metadata={"help": "Pack each micro-batch's sequences into one row without padding "
                          "(needs flash_attention_2/3, sdpa, eager, flex_attention or packed_varlen)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already holds a trained model or checkpoints, first "
                          "deleting that run's checkpoint-* folders and final files (other files stay). Off: such a "
                          "folder is refused unless resume_from_checkpoint is set."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "true: continue from the latest complete checkpoint-* in output_dir (partial ones are "
                          "skipped); or the path of a checkpoint folder."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator needs every column."})

    def __post_init__(self):
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            self.warmup_steps = float(self.warmup_ratio)
        if isinstance(self.tau_good, bool) or not isinstance(self.tau_good, (int, float)):
            raise ValueError(f"tau_good must be a number, got {self.tau_good!r} (a recipe's {TAU_GOOD_MEDIAN!r} is "
                             "resolved before this config is built: resolve.ResolvedRecipe.tau_good_rule)")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {tuple(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.perf_weight not in PERF_WEIGHTS:
            raise ValueError(f"perf_weight must be one of {PERF_WEIGHTS}, got {self.perf_weight!r}")
        loss = loss_of(self)
        if self.label_smoothing and "label_smoothing" not in loss.reads:
            raise ValueError(f"label_smoothing is defined for {' and '.join(USED_BY_LOSS['label_smoothing'])} only; "
                             f"{loss.title} has none.")
        if not 0 < self.max_prompt_length < self.max_length:
            raise ValueError(
                f"need 0 < max_prompt_length < max_length, got {self.max_prompt_length} and {self.max_length}"
            )
        if self.logps_chunk_size <= 0:
            raise ValueError(f"logps_chunk_size must be positive, got {self.logps_chunk_size}")
        if self.ref_logps_cache_dir in ("", "none", "None"):
            self.ref_logps_cache_dir = None
        super().__post_init__()


def derive_gradient_accumulation(
    global_batch_size: int | None, per_device_batch_size: int, num_processes: int, explicit_steps: int | None
) -> int:
    """Gradient accumulation steps that make ``per_device * processes * steps == global``.

    ``explicit_steps`` is the value the recipe set itself (None when unset); it must agree.
    """
    if global_batch_size is None:
        return explicit_steps or 1
    per_step = per_device_batch_size * num_processes
    if global_batch_size <= 0 or global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not a positive multiple of "
            f"per_device_train_batch_size ({per_device_batch_size}) x num_processes ({num_processes}) = {per_step}; "
            "change per_device_train_batch_size or the number of processes."
        )
    steps = global_batch_size // per_step
    if explicit_steps is not None and explicit_steps != steps:
        raise ValueError(
            f"gradient_accumulation_steps={explicit_steps} contradicts global_batch_size={global_batch_size} "
            f"(which needs {steps} with {num_processes} processes x {per_device_batch_size} per device); "
            "set only one of them."
        )
    return steps


# --- Checks before launch: value ranges and which loss uses which key -------------------
# One table each, used by resolve.resolve (ranges), the dry-run JSON and --help (loss keys).

# torch_dtype: the names training.models.DTYPES maps to torch dtypes (a test keeps the two equal)
TORCH_DTYPES = ("bfloat16", "float16", "float32", "auto")
# attn_implementation: transformers' own names and ours (packed_attention.PACKED_VARLEN)
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention", "packed_varlen")

# (keys, predicate, allowed range as written in the error message)
VALUE_RULES: tuple[tuple[tuple[str, ...], Any, str], ...] = (
    (("beta", "lora_alpha"), lambda v: finite_number(v) and v > 0, "a number > 0"),
    (("qual_eta", "perf_gamma", "nll_lambda", "nll_ref_gap_tolerance", "simpo_gamma_beta_ratio", "learning_rate",
      "weight_decay",
      "max_grad_norm", "num_train_epochs", "warmup_steps", "test_split_size"),
     lambda v: finite_number(v) and v >= 0, "a number >= 0"),
    (("tau_ref",), finite_number, "a finite number"),
    (("tau_good",), lambda v: finite_number(v) or (isinstance(v, str) and v in TAU_GOOD_RULES),
     "a finite number or " + " or ".join(f"'{rule}'" for rule in TAU_GOOD_RULES)),
    (("truncation_rule",), lambda v: v in TRUNCATION_RULES, " or ".join(f"'{r}'" for r in TRUNCATION_RULES)),
    (("system_turn",), lambda v: v in SYSTEM_TURNS, " or ".join(f"'{r}'" for r in SYSTEM_TURNS)),
    (("label_smoothing",), lambda v: finite_number(v) and 0 <= v < 0.5, "a number in [0, 0.5)"),
    (("warmup_ratio", "lora_dropout"), lambda v: finite_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    (("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
      "global_batch_size", "precompute_ref_batch_size", "max_length", "max_prompt_length", "logps_chunk_size",
      "lora_r", "num_processes", "num_machines", "preprocessing_num_workers", "save_total_limit"),
     lambda v: is_integer(v) and v >= 1, "an integer >= 1"),
    (("machine_rank",), lambda v: is_integer(v) and v >= 0, "an integer >= 0"),
    (("main_process_port",), lambda v: is_integer(v) and 0 <= v <= 65535, "a port number in [0, 65535]"),
    (("main_process_ip",), lambda v: isinstance(v, str) and v.strip() != "", "a host name or IP address"),
    (("logging_steps", "save_steps", "eval_steps"), lambda v: finite_number(v) and v > 0 and (v < 1 or v == int(v)),
     "an integer >= 1, or a fraction in (0, 1) of all steps"),
    (("max_steps",), lambda v: is_integer(v) and (v == -1 or v >= 1), "-1 (train num_train_epochs) or an integer >= 1"),
    (("torch_dtype",), lambda v: v in TORCH_DTYPES, f"one of {', '.join(TORCH_DTYPES)}"),
    (("attn_implementation",), lambda v: v in ATTN_IMPLEMENTATIONS or (isinstance(v, str) and "/" in v),
     f"one of {', '.join(ATTN_IMPLEMENTATIONS)}, or a hub kernel repository 'org/name'"),
)


VALUE_RULE_OF = rules_by_key(VALUE_RULES)


def check_values(values: dict[str, Any], nullable: set[str] = frozenset()) -> None:
    """Raise ValueError naming the key, the value and the allowed range for the first bad value.

    ``nullable`` are the keys whose ``null`` means "unset" (their default is None).
    """
    bad = first_bad_value(values, VALUE_RULE_OF, nullable)
    if bad is not None:
        key, value, allowed = bad
        raise ValueError(f"{key}={value!r} is out of range: must be {allowed}")


# The keys only some loss types read, and which: a view of the loss table, so an entry added
# (or one a test registers) shows in --help, the dry run and the checks at once.

def _keys_in_field_order() -> list[str]:
    return [f.name for cls in (ModelArguments, DataArguments, LaunchArguments, UniDPOConfig) for f in fields(cls)]


class _UsedByLoss(Mapping):
    """key -> the loss types that read it, for each key some loss type does not read (a key not
    listed is read by every loss type), in the order of the fields; read from :data:`LOSS_TYPES`."""

    def _table(self) -> dict[str, tuple[str, ...]]:
        readers = {name: set(loss.reads) for name, loss in LOSS_TYPES.items()}
        table = {}
        for key in _keys_in_field_order():
            users = tuple(name for name, keys in readers.items() if key in keys)
            if users and len(users) < len(readers):
                table[key] = users
        return table

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


USED_BY_LOSS: Mapping[str, tuple[str, ...]] = _UsedByLoss()


def ignored_by_loss_type(loss_type: str) -> list[str]:
    """The recipe keys that ``loss_type`` does not read (shown in the dry-run JSON)."""
    return [key for key, users in USED_BY_LOSS.items() if loss_type not in users]
