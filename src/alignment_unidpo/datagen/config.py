"""The YAML of a ``make data`` pipeline: typed sections, validation, and the per-stage hash keys.

A config has one mapping per stage, each a dataclass below (``prompts``:
:class:`PromptsConfig`, ``generate``: :class:`GenerateConfig`, ``score``:
:class:`ScoreConfig`, ``normalize``: :class:`NormalizeConfig`, ``pair``: :class:`PairConfig`),
plus ``name`` and ``output_root`` (:class:`DataConfig`). Each field holds its default, its
help and its allowed values (a :class:`~alignment_unidpo.base.schema.Rule` in its metadata,
:mod:`alignment_unidpo.base.schema`): the checks, ``python -m alignment_unidpo.data_cli
--help`` (:func:`help_text`) and the dry run are derived from there. The registered prompt
sources and scorers (:data:`~.sources.PROMPT_SOURCES`, :data:`~.scorers.SCORERS`) are the
allowed values of ``prompts.source`` and ``score.scorer``, read when a config is checked.

Each stage's output folder is ``<output_root>/<name>/<stage>-<hash>``, where the hash covers
that stage's keys and those of every stage before it (:func:`stage_keys`): changing the
scorer re-scores but does not re-generate, changing the prompts redoes everything. Keys that
cannot change a stage's output (batch sizes) are left out of its hash (``hashed=False``).

**Caches survive changes of the config schema** (cached generations cost GPU-days): the
hash input is the same mapping of the same keys as before the sections became dataclasses
(``tests/test_datagen_inputs.py`` pins the shipped configs' hashes). A key added later is
declared with ``added=True``: left out of the hash while at its default, so no existing
config's folders move. A renamed value keeps its old name as an alias and is hashed under
its first name (``Choice(..., renamed={"old": "new"})``); a renamed key likewise
(``option(..., old_names=("old",))``).

:func:`load_config` reads the YAML (:func:`alignment_unidpo.base.yamlio.read_yaml`), applies
the dotted ``--section.key=value`` overrides, refuses an unknown key (naming the closest
known one) and a bad value (one error naming file, key, value and allowed values), then the
combinations the stages need (:func:`check`); it returns the plain mapping every stage reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import DataGenError
from ..base.schema import (BOOLEAN, MAPPING, NON_EMPTY_TEXT, TEXT, Choice, Rule, closest, default_of, integer,
                           key_lines, number, old_name_of, option, read_fields, read_string_as, rule_of)
from ..base.values import is_integer
from ..base.yamlio import read_yaml
from ..configs import TORCH_DTYPES
from ..generation.backends import BACKENDS, resolve_backend
from .judge_prompt import PINNED as PINNED_PROMPTS
from .scorers import SCORERS
from .sources import PROMPT_SOURCES, model_source
from ..base.paths import REPO_ROOT

STAGES = ("generate", "score", "normalize", "pair")
DEFAULT_CONFIG = REPO_ROOT / "data_configs" / "toy-world-on-policy.yaml"
# paper configs renamed for what they make (their old file name -> the new one under data_configs/)
RENAMED_CONFIGS = {"math-numinamath.yaml": "paper/math-qwen2.5-math-7b.yaml",
                   "textual-v0.2-armorm.yaml": "paper/llama3-8b-instruct-v0.2-armorm.yaml",
                   "textual-external-judge.yaml": "paper/llama3-8b-instruct-v0.1-gpt4o.yaml"}

AT_LEAST_ONE = integer("an integer >= 1", lambda v: v >= 1)


def positive_or_null(allowed: str) -> Rule:
    """An integer >= 1, or null (for a key whose default is a number: null is then a value, not "unset")."""
    return Rule(allowed, lambda v: v is None or (is_integer(v) and v >= 1), read_string_as(int))

# Torch dtypes (the names training.models loads; transformers takes them as they are)
DTYPE = Choice(TORCH_DTYPES)
HTTP_URL = Rule("an http:// or https:// URL", lambda v: isinstance(v, str) and re.match(r"^https?://[^\s/]+\S*$", v)
                is not None)


def _env_var_name(value: Any) -> Any:
    """An environment variable's name; anything else is refused without being echoed (it may be
    the API key itself, which no error line may show)."""
    if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value)):
        raise DataGenError("score.judge_api_key_env must be the name of an environment variable (letters, digits, "
                           "_), not the key itself; the value given is not shown")
    return value


ENV_VAR = Rule("the name of an environment variable", parse=_env_var_name)


@dataclass
class PromptsConfig:
    """``prompts``: where the prompts come from and how they become conversations."""

    source: str = option("jsonl", rule=Choice(PROMPT_SOURCES),
                         help="Where the prompts come from: jsonl (a file, prompts.path), or a source registered by "
                              "a package above datagen (the preference world's: world).")
    path: str | None = option(None, rule=TEXT, help="source jsonl: the prompts file, one JSON object a line.")
    prompt_field: str = option("prompt", rule=NON_EMPTY_TEXT,
                               help="The field holding each prompt: a string or a chat message list.")
    answer_field: str | None = option(None, rule=NON_EMPTY_TEXT,
                                      help="The field holding the ground truth; needed by score.verifier: math.")
    template: str = option("chat", rule=Choice(("chat", "math")),
                           help="chat: the prompt as it is; math: the paper's Tab. C.2 system + user turns.")
    system_prompt: str | None = option(None, rule=TEXT,
                                       help="System message put before every prompt that has none.")
    limit: int | None = option(None, rule=integer("an integer >= 1, or null (every prompt)", lambda v: v >= 1),
                               help="The first N prompts only.")
    world_seed: int = option(0, rule=integer("an integer"),
                             help="source world: the preference world of this seed (its training-pair prompts).")
    world_root: str | None = option(None, rule=TEXT, help="source world: its cache folder (default outputs/toy-world).")
    world: dict[str, Any] = option(default_factory=dict, rule=MAPPING, help="source world: WorldConfig overrides.")
    sft: dict[str, Any] = option(default_factory=dict, rule=MAPPING, help="source world: SFTConfig overrides.")
    dedupe: bool = option(False, rule=BOOLEAN, added=True,
                          help="Drop a prompt equal to an earlier one (the first is kept, before limit), as SimPO's "
                               "decode.py reads sorted(set(prompts)) of UltraFeedback's train_prefs.")


@dataclass
class GenerateConfig:
    """``generate``: N answers per prompt from the policy."""

    backend: str = option("auto", rule=Choice(BACKENDS),
                          help="auto (vllm where `make vllm-env` was run and a GPU is visible, else transformers), "
                               "transformers (in this process) or vllm (the vLLM environment; on the CPU too).")
    model: str | None = option(None, rule=NON_EMPTY_TEXT,
                               help="Required: the policy (local folder or hub id), or a prompt source's own model "
                                    "(world:sft, the world's SFT model).")
    num_samples: int = option(8, rule=integer("an integer >= 2 (a pair needs two answers)", lambda v: v >= 2),
                              help="Answers sampled per prompt.")
    temperature: float = option(0.8, rule=number("a number >= 0 (0: greedy)", lambda v: v >= 0),
                                help="Sampling temperature.")
    top_p: float = option(1.0, rule=number("a number in (0, 1]", lambda v: 0 < v <= 1), help="Nucleus sampling.")
    max_new_tokens: int = option(2048, rule=AT_LEAST_ONE, help="Longest answer, in tokens.")
    seed: int = option(0, rule=integer("an integer"),
                       help="The prompt at position p samples with seed + p, whatever the shards, processes and "
                            "back-end batching.")
    shard_size: int = option(64, rule=AT_LEAST_ONE,
                             help="Prompts per shard: the unit of caching, of resuming and of the split over "
                                  "processes.")
    dtype: str = option("auto", rule=DTYPE, help="Torch dtype of the policy.")
    batch_size: int = option(16, rule=AT_LEAST_ONE, hashed=False,
                             help="transformers: conversations per generate call (not hashed).")
    tensor_parallel_size: int = option(1, rule=AT_LEAST_ONE,
                                       help="vllm: GPUs per engine (> 1 only for models that do not fit one GPU).")
    gpu_memory_utilization: float = option(0.9, rule=number("a number in (0, 1]", lambda v: 0 < v <= 1), hashed=False,
                                           help="vllm: the share of GPU memory the engine takes (not hashed).")
    trust_remote_code: bool = option(False, rule=BOOLEAN, help="Run the model repository's own code.")


@dataclass
class ScoreConfig:
    """``score``: a score for each answer (and, with the verifier, correct or not)."""

    scorer: str = option("reward_model", rule=Choice(SCORERS),
                         help="reward_model (a sequence-classification reward model, score.model), external (a "
                              "judge's scores file, score.path), prm (a process reward model, score.model), none "
                              "(pair.rule: math only), openai_judge (a chat model at an OpenAI-compatible endpoint "
                              "rates each answer 1-10, FastChat's single-v1; score.model, score.judge_*), or one "
                              "registered by a package above datagen (the preference world's world_judge).")
    model: str | None = option(None, rule=NON_EMPTY_TEXT,
                               help="reward_model / prm: local folder or hub id; openai_judge: the judge's model "
                                    "name at the endpoint (the paper: gpt-4o-2024-05-13).")
    path: str | None = option(None, rule=TEXT, help="external: jsonl of {prompt, answer, score}.")
    trust_remote_code: bool = option(False, rule=BOOLEAN,
                                     help="Run the model repository's own code (ArmoRM and the PRM need it); a PRM's "
                                          "score folder does not depend on it.")
    dtype: str = option("bfloat16", rule=DTYPE, help="Torch dtype of the scorer.")
    batch_size: int = option(8, rule=AT_LEAST_ONE, hashed=False, help="Answers per forward pass (not hashed).")
    max_length: int = option(4096, rule=AT_LEAST_ONE, help="Tokens of conversation + answer the scorer reads.")
    verifier: str | None = option(None, rule=Choice((None, "math")),
                                  help="math: label each answer correct/incorrect with math-verify against "
                                       "prompts.answer_field.")
    prm_step_separator: str = option("\n\n", rule=NON_EMPTY_TEXT, help="prm: what splits an answer into steps.")
    prm_aggregate: str = option("min", rule=Choice(("min", "last", "mean", "prod")),
                                help="prm: how the step rewards become one score.")
    prm_scale: float = option(10.0, rule=number("a number > 0", lambda v: v > 0),
                              help="prm: the 0-1 score times this (10: the authors' get_uni_dpo_data.py multiplies "
                                   "the PRM's 0-1 rewards by 10; the paper does not say).")
    prm_call: str = option("model_card", rule=Choice(("model_card", "authors")), added=True,
                           help="prm: model_card (the card's system prompt, the raw problem as the user turn, the "
                                "non-blank steps joined by <extra_0>), or authors (as their "
                                "progress_reward_labeling.py: blank steps kept, the chat template's generation prompt overwritten into a last, "
                                "spurious step, 4,090 tokens at most, the reduced reward rounded to 3 decimals).")
    # openai_judge (datagen/judge.py); added after caches existed: a key at its default leaves
    # every score folder where it was, and the keys that cannot change a rating are not hashed
    judge_api_base: str = option("https://api.openai.com/v1", rule=HTTP_URL, hashed=False,
                                 help="openai_judge: the endpoint's base URL (.../v1; an open judge on vllm serve: "
                                      "http://127.0.0.1:8000/v1) (not hashed).")
    judge_api_key_env: str = option("OPENAI_API_KEY", rule=ENV_VAR, hashed=False,
                                    help="openai_judge: the environment variable holding the API key (the key "
                                         "itself never goes in a config) (not hashed).")
    judge_prompt: str = option("single-v1", rule=NON_EMPTY_TEXT, added=True,
                               help="openai_judge: the judge prompt's name (single-v1: FastChat 0.2.36's, fetched "
                                    "and hash-checked on first use).")
    judge_prompt_file: str | None = option(None, rule=NON_EMPTY_TEXT, added=True,
                                           help="openai_judge: a jsonl of judge prompts in FastChat's format to "
                                                "take judge_prompt from (default: FastChat 0.2.36's pinned one).")
    judge_temperature: float = option(0.0, rule=number("a number >= 0", lambda v: v >= 0), added=True,
                                      help="openai_judge: sampling temperature (FastChat's: 0).")
    judge_max_tokens: int = option(2048, rule=AT_LEAST_ONE, added=True,
                                   help="openai_judge: the judgment's max_tokens (FastChat's: 2048).")
    judge_concurrency: int = option(8, rule=AT_LEAST_ONE, hashed=False,
                                    help="openai_judge: requests in flight at most (not hashed).")
    judge_max_retries: int = option(8, rule=integer("an integer >= 0", lambda v: v >= 0), hashed=False,
                                    help="openai_judge: retries of a request on 429, 408, 5xx, timeouts and dropped "
                                         "connections, waiting Retry-After or 1, 2, 4, ... 60 s (not hashed).")
    judge_timeout: float = option(120.0, rule=number("a number > 0", lambda v: v > 0), hashed=False,
                                  help="openai_judge: seconds to wait for one answer (not hashed).")
    judge_cache: str | None = option(None, rule=NON_EMPTY_TEXT, hashed=False,
                                     help="openai_judge: folder of the ratings cache (ratings.jsonl); default "
                                          "<output_root>/judge-cache (not hashed).")


@dataclass
class NormalizeConfig:
    """``normalize``: the scores of the whole set onto one scale."""

    method: str = option("none", rule=Choice(("none", "linear", "zscore_cdf")),
                         help="none; linear: scale * s + offset; zscore_cdf: z-score over all scores, then "
                              "10 * Phi(z) (footnote 4, ArmoRM).")
    scale: float = option(1.0, rule=number("a finite number"), help="linear: the factor.")
    offset: float = option(0.0, rule=number("a finite number"), help="linear: the offset.")
    over: str = option("answers", rule=Choice(("answers", "pairs")), added=True,
                       help="zscore_cdf: the scores the mean and sd are taken over: answers (every sampled answer; "
                            "the pair rule reads the normalised scores) or pairs (the chosen and rejected scores only; "
                            "the pair rule reads the scores as scored, then the pairs' scores are normalised).")


@dataclass
class PairConfig:
    """``pair``: chosen and rejected answers of each prompt."""

    rule: str = option("best_worst", rule=Choice(("best_worst", "best_correct_worst_incorrect", "authors"),
                                                 renamed={"math": "best_correct_worst_incorrect"},
                                                 note="(math: the old name of best_correct_worst_incorrect)"),
                       help="best_worst: chosen = best, rejected = worst; best_correct_worst_incorrect: chosen the "
                            "best-scored correct answer, rejected the worst-scored incorrect one, one pair per "
                            "problem, kept only if it scores higher; authors: the authors' get_uni_dpo_data.py "
                            "(docs/make-data.md): a correct chosen scoring above chosen_above, a random lower-or-"
                            "equal-scored correct rejected, else an incorrect one, several pairs per problem, "
                            "max_pairs in all.")
    min_margin: float = option(0.0, rule=number("a number >= 0", lambda v: v >= 0),
                               help="Drop pairs whose score margin is not above this (ties at 0); authors: the "
                                    "rejected scores at most chosen - min_margin (their score_margin, lowered by 0.5 "
                                    "while the pairs fall short of max_pairs).")
    chosen_above: float = option(6.0, rule=number("a finite number"), added=True,
                                 help="authors: a chosen answer scores above this (their > 6, on 0-10).")
    max_pairs: int | None = option(10000, rule=positive_or_null("an integer >= 1, or null (no cap)"),
                                   added=True, help="authors: pairs in all (their max_data_num), taken pass by pass "
                                                    "over the problems in a seeded order.")
    max_tokens: int | None = option(4000, rule=positive_or_null("an integer >= 1, or null (keep all)"),
                                    added=True, help="authors: drop an answer whose prompt + answer tokens exceed "
                                                     "this (their truncate_length; null: their -1).")
    seed: int = option(0, rule=integer("an integer"), added=True,
                       help="authors: seeds the order of the problems and each problem's random choices.")
    self_pairs: bool = option(False, rule=BOOLEAN, added=True,
                              help="authors: true as their script is written: the chosen answer is one of its own "
                                   "rejected candidates (pairs of an answer with itself; the incorrect fallback "
                                   "unreachable at min_margin 0).")


SECTION_CLASSES: dict[str, type] = {"prompts": PromptsConfig, "generate": GenerateConfig, "score": ScoreConfig,
                                    "normalize": NormalizeConfig, "pair": PairConfig}
SECTIONS = tuple(SECTION_CLASSES)  # prompts, then the STAGES


@dataclass
class DataConfig:
    """A whole ``make data`` config: its name, where its folders go, and one section per stage."""

    name: str | None = option(None, rule=NON_EMPTY_TEXT,
                              help="The dataset's name: its folders are <output_root>/<name>/<stage>-<hash>; "
                                   "default: the config file's name.")
    output_root: str = option("outputs/data", rule=NON_EMPTY_TEXT,
                              help="Where datasets go (a relative path is under the repository).")
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    pair: PairConfig = field(default_factory=PairConfig)

    def as_dict(self, config_path: str | Path) -> dict[str, Any]:
        """The mapping every stage reads: ``{"name", "output_root", "prompts": {...}, ..., "config_path"}``."""
        return {**dataclasses.asdict(self), "config_path": str(config_path)}


TOP_KEYS = tuple(f.name for f in dataclasses.fields(DataConfig) if f.name not in SECTION_CLASSES)


def dotted_keys() -> list[str]:
    """Every key a config may set, as an override names it: ``name``, ..., ``generate.temperature``, ..."""
    return [*TOP_KEYS, *(f"{s}.{f.name}" for s, cls in SECTION_CLASSES.items() for f in dataclasses.fields(cls))]


def unknown_key(key: str, value: Any) -> str:
    """The error for an unknown top-level key, naming the closest known one: for a mapping
    (``generat: {...}``) the closest section; else the section key of that name
    (``temperature`` -> ``generate.temperature``) or the closest key of all."""
    if isinstance(value, dict):
        hint = closest(key, SECTIONS)
    else:
        same_name = [k for k in dotted_keys() if k.rsplit(".", 1)[-1] == key]
        hint = same_name[0] if len(same_name) == 1 else closest(key, dotted_keys())
    return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else
                                       f" (known: {', '.join((*TOP_KEYS, *SECTIONS))})")


def read_config(raw: dict[str, Any], where: str) -> DataConfig:
    """The typed config of a YAML mapping (overrides applied): every value read and checked
    by its field's rule, a default for every key not given. One DataGenError for the first
    mistake, naming ``where``, the key, the value and the allowed values."""
    top_keys = (*TOP_KEYS, *old_name_of(DataConfig))
    try:
        for key, value in raw.items():
            if key not in top_keys and key not in SECTION_CLASSES:
                raise ValueError(unknown_key(key, value))
        top = read_fields(DataConfig, {k: v for k, v in raw.items() if k in top_keys})
        sections = {}
        for name, cls in SECTION_CLASSES.items():
            given = raw.get(name)
            if given is None:
                given = {}
            if not isinstance(given, dict):
                raise ValueError(f"{name} must be a mapping of key: value, got {given!r}")
            sections[name] = cls(**read_fields(cls, given, prefix=f"{name}."))
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        raise DataGenError(f"{where}: {err}") from None
    return DataConfig(**{**top, **sections})


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``generate.num_samples=4`` into the raw config mapping."""
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def load_data_config(path: str | Path | None = None,
                     overrides: dict[str, Any] | None = None) -> tuple[DataConfig, Path]:
    """The typed, checked config of the YAML at ``path`` (default: the toy-world one) plus
    dotted overrides, and the file it came from."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    if not path.is_file():
        if path.name in RENAMED_CONFIGS:
            raise DataGenError(f"{path}: renamed to data_configs/{RENAMED_CONFIGS[path.name]} (issue 22: named for "
                               "what it makes, with the authors' settings; the file as it was: "
                               f"tests/fixtures/datagen-configs-before-issue-22/{path.name})")
        raise DataGenError(f"{path}: no such data config (see data_configs/)")
    raw = read_yaml(path, DataGenError) or {}
    if not isinstance(raw, dict):
        raise DataGenError(f"{path}: a data config must be a mapping")
    for key, value in (overrides or {}).items():
        apply_override(raw, key, value)
    config = read_config(raw, str(path))
    config.name = config.name or path.stem
    return config, path


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated config of the YAML at ``path`` (default: the toy-world one) plus dotted
    overrides, as the mapping the stages read (:meth:`DataConfig.as_dict`)."""
    config, path = load_data_config(path, overrides)
    cfg = config.as_dict(path)
    check(cfg, str(path))
    return cfg


def check(cfg: dict[str, Any], where: str) -> None:
    """The combinations the stages need, before anything runs (each value on its own was
    checked by its field's rule when the config was read, :func:`read_config`)."""
    p, g, s = cfg["prompts"], cfg["generate"], cfg["score"]
    scorer = SCORERS[s["scorer"]]
    if p["source"] == "jsonl" and not p["path"]:
        raise DataGenError(f"{where}: prompts.path is required for prompts.source: jsonl")
    if not g["model"]:
        raise DataGenError(f"{where}: generate.model is required")
    owner = model_source(str(g["model"]))
    if owner is not None and owner != p["source"]:
        raise DataGenError(f"{where}: generate.model: {g['model']} needs prompts.source: {owner}")
    if scorer.uses_model and not s["model"]:
        raise DataGenError(f"{where}: score.model is required for score.scorer: {s['scorer']}")
    if s["scorer"] == "external" and not s["path"]:
        raise DataGenError(f"{where}: score.path (the judge's scores file) is required for score.scorer: external")
    if s["scorer"] == "openai_judge" and not s["model"]:
        raise DataGenError(f"{where}: score.model (the judge's model name at score.judge_api_base, e.g. "
                           "gpt-4o-2024-05-13) is required for score.scorer: openai_judge")
    if s["scorer"] == "openai_judge" and not s["judge_prompt_file"] and s["judge_prompt"] not in PINNED_PROMPTS:
        raise DataGenError(f"{where}: score.judge_prompt: {s['judge_prompt']!r} needs score.judge_prompt_file (a "
                           "jsonl of judge prompts in FastChat's format); without it the pinned FastChat 0.2.36 "
                           f"prompts are known: {', '.join(PINNED_PROMPTS)}")
    if scorer.needs_source is not None and p["source"] != scorer.needs_source:
        raise DataGenError(f"{where}: score.scorer: {s['scorer']} needs prompts.source: {scorer.needs_source}")
    if s["verifier"] == "math" and p["source"] == "jsonl" and not p["answer_field"]:
        raise DataGenError(f"{where}: score.verifier: math needs prompts.answer_field (the ground truth)")
    rule = cfg["pair"]["rule"]
    if rule in ("best_correct_worst_incorrect", "authors") and s["verifier"] != "math":
        raise DataGenError(f"{where}: pair.rule: {rule} needs score.verifier: math (correct/incorrect labels)")
    if s["scorer"] == "none" and rule != "best_correct_worst_incorrect":
        raise DataGenError(f"{where}: score.scorer: none only works with pair.rule: best_correct_worst_incorrect")
    unread = [f"pair.{key}" for key in AUTHORS_KEYS if rule != "authors" and cfg["pair"][key] != _default("pair", key)]
    if unread:  # a key that would change nothing: said, not ignored
        raise DataGenError(f"{where}: {', '.join(unread)}: read by pair.rule: authors only (this config: {rule})")
    if s["scorer"] != "prm" and s["prm_call"] != _default("score", "prm_call"):
        raise DataGenError(f"{where}: score.prm_call: read by score.scorer: prm only (this config: {s['scorer']})")
    n = cfg["normalize"]
    if n["over"] == "pairs" and n["method"] != "zscore_cdf":
        raise DataGenError(f"{where}: normalize.over: pairs only changes normalize.method: zscore_cdf "
                           f"(method {n['method']} maps each score alone)")


AUTHORS_KEYS = ("chosen_above", "max_pairs", "max_tokens", "seed", "self_pairs")  # read by pair.rule: authors only


def _default(section: str, key: str) -> Any:
    return default_of(SECTION_CLASSES[section].__dataclass_fields__[key])


USAGE = """usage: python -m alignment_unidpo.data_cli [CONFIG.yaml] [--dry_run] [--progress=false] [--section.key=value ...]
       make data [CONFIG=data_configs/...yaml] [DRY_RUN=1] [ARGS="--section.key=value ..."]

Makes preference pairs the paper's way (appendix C.2): generate N answers per prompt, score
them, normalise the scores, pair them; each stage cached in its own folder. CONFIG defaults
to {default}. Overrides are parsed as YAML and win over the config. --dry_run prints the plan
as JSON (each stage's settings, folder and whether it is cached, and the problems a run would
stop on) and runs nothing; --help prints this. A bad key or value is one `error:` line."""


def help_text() -> str:
    """``python -m alignment_unidpo.data_cli --help``: usage, the shipped configs, and every key
    with its default, help and allowed values (from the dataclass fields)."""
    default = DEFAULT_CONFIG.relative_to(REPO_ROOT)
    head, *paragraphs = USAGE.format(default=default).split("\n\n")
    out = [head]
    for paragraph in paragraphs:
        out += ["", textwrap.fill(paragraph, 88, break_long_words=False, break_on_hyphens=False)]
    configs = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "data_configs").rglob("*.yaml"))
    out += ["", "configs (data_configs/; CONFIG=PATH):"]
    out += textwrap.wrap(", ".join(configs), 88, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    out += ["", "keys (set in the config YAML, or as --key=value / --section.key=value):", ""]
    out += key_lines(DataConfig)
    for name, cls in SECTION_CLASSES.items():
        out += ["", f"{name} ({cls.__name__}): {cls.__doc__.strip().split(': ', 1)[-1]}"]
        out += key_lines(cls, prefix=f"{name}.")
    return "\n".join(out)


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def hashed_settings(cls: type, settings: dict[str, Any]) -> dict[str, Any]:
    """The part of a section's settings its hash covers, under the names the hash has always
    used: a ``hashed=False`` key is left out, an ``added=True`` key too while at its default,
    a renamed value or key is hashed under its first name. A key of ``settings`` that is not a
    field stays as it is."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    first_name = {key: old for old, key in old_name_of(cls).items()}
    out = {}
    for key, value in settings.items():
        f = fields.get(key)
        if f is not None:
            if not f.metadata.get("hashed", True) or (f.metadata.get("added") and value == default_of(f)):
                continue
            if isinstance(rule_of(f), Choice):
                value = rule_of(f).stored_name(value)
        out[first_name.get(key, key)] = value
    return out


def hash_input(stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What of a stage's settings goes into its hash (:func:`hashed_settings`).

    The PRM scorer loaded remote code whatever ``score.trust_remote_code`` said until that
    key was honoured, so every PRM score folder was named with the key at its default
    (false); a PRM's hash keeps that input (the key decides whether the model loads, not
    what it scores) and those folders keep their names.

    ``generate.backend: auto`` is hashed as the back-end it picks on this machine (the two
    draw different samples), so an ``auto`` config shares its folders with one naming that
    back-end, and the folders of configs written before ``auto`` existed keep their names.
    """
    out = hashed_settings(SECTION_CLASSES[stage], settings)
    if stage == "generate" and out.get("backend") == "auto":
        out["backend"] = resolve_backend("auto")
    if stage == "score" and settings["scorer"] == "prm":
        out["trust_remote_code"] = default_of(ScoreConfig.__dataclass_fields__["trust_remote_code"])
    return out


def stage_keys(cfg: dict[str, Any]) -> dict[str, str]:
    """Each stage's hash: its own keys and every earlier stage's (batch sizes excluded)."""
    keys, upstream = {}, {"prompts": hash_input("prompts", cfg["prompts"])}
    for stage in STAGES:
        upstream[stage] = hash_input(stage, cfg[stage])
        keys[stage] = _digest(upstream)
    return keys


def stage_dirs(cfg: dict[str, Any]) -> dict[str, Path]:
    root = Path(cfg["output_root"])
    if not root.is_absolute():
        root = REPO_ROOT / root
    return {stage: root / cfg["name"] / f"{stage}-{key}" for stage, key in stage_keys(cfg).items()}
