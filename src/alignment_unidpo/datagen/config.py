"""The YAML of a ``make data`` pipeline: defaults, validation, and the per-stage hash keys.

A config has one mapping per stage (``prompts``, ``generate``, ``score``, ``normalize``,
``pair``) plus ``name`` and ``output_root``; see README "Make data" for every key. Each
stage's output folder is ``<output_root>/<name>/<stage>-<hash>``, where the hash covers
that stage's keys and those of every stage before it (:func:`stage_keys`): changing the
scorer re-scores but does not re-generate, changing the prompts redoes everything.
Keys that cannot change a stage's output (batch sizes, progress) are left out of its hash.

:func:`load_config` refuses a bad value before anything runs, naming the file and the key:
each number against :data:`VALUE_RULES` (one table, the same style as the training
recipe's :data:`alignment_unidpo.configs.VALUE_RULES`, checked by the same helpers of
:mod:`alignment_unidpo.base.values`), each choice against
:data:`CHOICES` (and the registered prompt sources and scorers), each boolean through
:func:`alignment_unidpo.base.values.parse_bool`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from ..base.errors import DataGenError
from ..base.values import finite_number, first_bad_value, is_integer, parse_bool, rules_by_key
from ..base.yamlio import read_yaml
from ..configs import TORCH_DTYPES
from .scorers import SCORERS
from .sources import PROMPT_SOURCES, model_source
from ..base.paths import REPO_ROOT

STAGES = ("generate", "score", "normalize", "pair")
DEFAULT_CONFIG = REPO_ROOT / "data_configs" / "toy-world-on-policy.yaml"

DEFAULTS: dict[str, Any] = {
    "name": None,
    "output_root": "outputs/data",
    "prompts": {
        "source": "jsonl",          # jsonl, or a registered source (the world's: world)
        "path": None,               # jsonl: one object a line
        "prompt_field": "prompt",   # a string or a chat message list
        "answer_field": None,       # ground truth (math verifier); required when score.verifier is math
        "template": "chat",         # chat: the prompt as is; math: the Tab. C.2 system + user turns
        "system_prompt": None,
        "limit": None,              # first N prompts only
        "world_seed": 0,            # world: the preference world of this seed (its training-pair prompts)
        "world_root": None,         # world: cache folder (default outputs/toy-world)
        "world": {},                # world: WorldConfig overrides
        "sft": {},                  # world: SFTConfig overrides
    },
    "generate": {
        "backend": "transformers",  # transformers | vllm
        "model": None,              # path / hub id, or a prompt source's own model (world:sft)
        "num_samples": 8,
        "temperature": 0.8,
        "top_p": 1.0,
        "max_new_tokens": 2048,
        "seed": 0,
        "shard_size": 64,           # prompts per shard (the unit of caching and of process split)
        "dtype": "auto",
        "batch_size": 16,           # transformers: conversations per generate call
        "tensor_parallel_size": 1,  # vllm
        "gpu_memory_utilization": 0.9,  # vllm
        "trust_remote_code": False,
    },
    "score": {
        "scorer": "reward_model",   # reward_model | external | prm | none, or a registered one (world_judge)
        "model": None,              # reward_model / prm
        "path": None,               # external: jsonl of {prompt, answer, score}
        "trust_remote_code": False,
        "dtype": "bfloat16",
        "batch_size": 8,
        "max_length": 4096,
        "verifier": None,           # math: label each sample correct/incorrect (needs prompts.answer_field)
        "prm_step_separator": "\n\n",
        "prm_aggregate": "min",     # min | last | mean | prod over the step rewards
        "prm_scale": 10.0,          # the paper scales PRM scores on 0-1 by 10 (appendix C.2)
    },
    "normalize": {
        "method": "none",           # none | linear | zscore_cdf
        "scale": 1.0,               # linear: scale * s + offset
        "offset": 0.0,
    },
    "pair": {
        "rule": "best_worst",       # best_worst | math
        "min_margin": 0.0,          # drop pairs whose score margin is not above this (ties at 0)
    },
}

# Keys that do not change a stage's output: left out of its hash.
NOT_HASHED = {"batch_size", "gpu_memory_utilization"}
CHOICES = {
    ("prompts", "template"): ("chat", "math"),
    ("generate", "backend"): ("transformers", "vllm"),
    ("generate", "dtype"): TORCH_DTYPES,
    ("score", "verifier"): (None, "math"),
    ("score", "dtype"): TORCH_DTYPES,  # what training.models loads; transformers takes the names
    ("score", "prm_aggregate"): ("min", "last", "mean", "prod"),
    ("normalize", "method"): ("none", "linear", "zscore_cdf"),
    ("pair", "rule"): ("best_worst", "math"),
}

SECTIONS = ("prompts", *STAGES)


def _positive_int(v: Any) -> bool:
    return is_integer(v) and v >= 1


# (dotted keys, predicate, allowed values as written in the error message)
VALUE_RULES: tuple[tuple[tuple[str, ...], Any, str], ...] = (
    (("generate.temperature",), lambda v: finite_number(v) and v >= 0, "a number >= 0 (0: greedy)"),
    (("generate.top_p", "generate.gpu_memory_utilization"), lambda v: finite_number(v) and 0 < v <= 1,
     "a number in (0, 1]"),
    (("generate.num_samples",), lambda v: is_integer(v) and v >= 2, "an integer >= 2 (a pair needs two answers)"),
    (("generate.max_new_tokens", "generate.shard_size", "generate.batch_size", "generate.tensor_parallel_size",
      "score.batch_size", "score.max_length"), _positive_int, "an integer >= 1"),
    (("generate.seed", "prompts.world_seed"), is_integer, "an integer"),
    (("prompts.limit",), _positive_int, "an integer >= 1, or null (every prompt)"),
    (("score.prm_scale",), lambda v: finite_number(v) and v > 0, "a number > 0"),
    (("score.prm_step_separator",), lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    (("normalize.scale", "normalize.offset"), finite_number, "a finite number"),
    (("pair.min_margin",), lambda v: finite_number(v) and v >= 0, "a number >= 0"),
)
VALUE_RULE_OF = rules_by_key(VALUE_RULES)


def dotted(cfg: dict[str, Any]) -> dict[str, Any]:
    """The stage sections of a config (or of :data:`DEFAULTS`) flat: ``{"generate.temperature": 0.8, ...}``."""
    return {f"{section}.{key}": value for section in SECTIONS for key, value in cfg[section].items()}


# Every boolean key (a bool default): read with parse_bool, never bool() ("no" is truthy).
BOOL_KEYS = tuple(key for key, value in dotted(DEFAULTS).items() if isinstance(value, bool))
# Keys whose null means "unset": not range-checked when null.
NULLABLE_KEYS = frozenset(key for key, value in dotted(DEFAULTS).items() if value is None)


def _merge(defaults: dict[str, Any], given: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise DataGenError(f"{where}: unknown key {key!r} (known: {', '.join(defaults)})")
        if isinstance(defaults[key], dict) and key not in ("world", "sft"):
            if not isinstance(value, dict):
                raise DataGenError(f"{where}: {key} must be a mapping, got {value!r}")
            out[key] = _merge(defaults[key], value, f"{where}: {key}")
        else:
            out[key] = value
    return out


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``generate.num_samples=4`` into the raw config mapping."""
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated config of the YAML at ``path`` (default: the toy-world one) plus dotted overrides."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    if not path.is_file():
        raise DataGenError(f"{path}: no such data config (see data_configs/)")
    raw = read_yaml(path, DataGenError) or {}
    if not isinstance(raw, dict):
        raise DataGenError(f"{path}: a data config must be a mapping")
    for key, value in (overrides or {}).items():
        apply_override(raw, key, value)
    cfg = _merge(DEFAULTS, raw, str(path))
    cfg["name"] = cfg["name"] or path.stem
    cfg["config_path"] = str(path)
    parse_bools(cfg, str(path))
    check(cfg, str(path))
    return cfg


def parse_bools(cfg: dict[str, Any], where: str) -> None:
    """Every key of :data:`BOOL_KEYS` as a real bool, in place (``no``, ``"no"``, ``0`` are False)."""
    for key in BOOL_KEYS:
        section, leaf = key.split(".")
        try:
            cfg[section][leaf] = parse_bool(cfg[section][leaf], key)
        except ValueError as err:
            raise DataGenError(f"{where}: {err}") from None


def check_values(cfg: dict[str, Any], where: str) -> None:
    """The first value outside its :data:`VALUE_RULES` range, as an error naming file, key and value."""
    bad = first_bad_value(dotted(cfg), VALUE_RULE_OF, NULLABLE_KEYS)
    if bad is not None:
        key, value, allowed = bad
        raise DataGenError(f"{where}: {key} must be {allowed}, got {value!r}")


def choices() -> dict[tuple[str, str], tuple[Any, ...]]:
    """The allowed values of every choice key: :data:`CHOICES`, and the prompt sources and
    scorers registered (:data:`~.sources.PROMPT_SOURCES`, :data:`~.scorers.SCORERS`)."""
    return {("prompts", "source"): tuple(PROMPT_SOURCES), ("score", "scorer"): tuple(SCORERS), **CHOICES}


def check(cfg: dict[str, Any], where: str) -> None:
    """Value ranges, choices and the combinations the stages need, before anything runs."""
    check_values(cfg, where)
    for (section, key), allowed in choices().items():
        if cfg[section][key] not in allowed:
            raise DataGenError(f"{where}: {section}.{key} must be one of {allowed}, got {cfg[section][key]!r}")
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
    if scorer.needs_source is not None and p["source"] != scorer.needs_source:
        raise DataGenError(f"{where}: score.scorer: {s['scorer']} needs prompts.source: {scorer.needs_source}")
    if s["verifier"] == "math" and p["source"] == "jsonl" and not p["answer_field"]:
        raise DataGenError(f"{where}: score.verifier: math needs prompts.answer_field (the ground truth)")
    if cfg["pair"]["rule"] == "math" and s["verifier"] != "math":
        raise DataGenError(f"{where}: pair.rule: math needs score.verifier: math (correct/incorrect labels)")
    if s["scorer"] == "none" and cfg["pair"]["rule"] != "math":
        raise DataGenError(f"{where}: score.scorer: none only works with pair.rule: math")


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def hash_input(stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What of a stage's settings goes into its hash: all but :data:`NOT_HASHED`.

    The PRM scorer loaded remote code whatever ``score.trust_remote_code`` said until that
    key was honoured, so every PRM score folder was named with the key at its default
    (false); a PRM's hash keeps that input (the key decides whether the model loads, not
    what it scores) and those folders keep their names.
    """
    out = {k: v for k, v in settings.items() if k not in NOT_HASHED}
    if stage == "score" and settings["scorer"] == "prm":
        out["trust_remote_code"] = DEFAULTS["score"]["trust_remote_code"]
    return out


def stage_keys(cfg: dict[str, Any]) -> dict[str, str]:
    """Each stage's hash: its own keys and every earlier stage's (batch sizes excluded)."""
    keys, upstream = {}, {"prompts": cfg["prompts"]}
    for stage in STAGES:
        upstream[stage] = hash_input(stage, cfg[stage])
        keys[stage] = _digest(upstream)
    return keys


def stage_dirs(cfg: dict[str, Any]) -> dict[str, Path]:
    root = Path(cfg["output_root"])
    if not root.is_absolute():
        root = REPO_ROOT / root
    return {stage: root / cfg["name"] / f"{stage}-{key}" for stage, key in stage_keys(cfg).items()}
