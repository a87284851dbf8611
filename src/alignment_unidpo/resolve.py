"""Recipes resolved: YAML files (and overrides) into the configuration dataclasses.

Resolution order, later wins:

1. the file named by the recipe's ``base:`` key: another recipe in ``recipes/`` or a
   shared config in ``training_configs/`` (a base may name a base of its own);
2. the recipe YAML itself;
3. command-line overrides ``--key=value`` (or ``--key value``), whose values are parsed
   as YAML, so ``--beta=3``, ``--use_peft=true`` and ``--lora_target_modules=[q_proj]``
   all work.

Every key must be a field of one of the dataclasses in :mod:`alignment_unidpo.configs`;
an unknown key fails with the closest known key suggested. :func:`launch_command` is the
``accelerate launch`` command line that trains a resolved recipe. The ``make train``
command itself (checks, dry run, launch) is :mod:`alignment_unidpo.recipes`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import torch
import yaml

from .base.errors import RecipeError
from .base.values import parse_bool
from .base.yamlio import parse_overrides, read_yaml
from .configs import (TAU_GOOD_AT_LOAD, TAU_GOOD_RULES, DataArguments, LaunchArguments, ModelArguments, UniDPOConfig,
                      check_values, derive_gradient_accumulation, ignored_by_loss_type)
from .base.paths import REPO_ROOT

CONFIG_CLASSES = (ModelArguments, DataArguments, LaunchArguments, UniDPOConfig)
DEFAULT_RECIPE = "default"  # python -m alignment_unidpo.recipes with no RECIPE
DEFAULT_WORLD_RECIPE = "toy-world-uni-dpo"  # make train with no RECIPE: a run in the preference world


def _field_owner() -> dict[str, type]:
    owner = {}
    for cls in CONFIG_CLASSES:
        for f in dataclasses.fields(cls):
            if f.init:
                owner.setdefault(f.name, cls)
    return owner


def known_keys() -> set[str]:
    """Every key a recipe may set."""
    return set(_field_owner())


def _nullable_keys() -> set[str]:
    """Keys whose default is None: there ``null`` means unset and is not range-checked."""
    return {f.name for cls in CONFIG_CLASSES for f in dataclasses.fields(cls) if f.default is None}


def find_file(name: str, folder: str) -> Path:
    """A recipe/config given as a path, or as a bare name looked up in ``folder``."""
    candidates = [Path(name)]
    if not name.endswith((".yaml", ".yml")):
        candidates += [Path(folder) / f"{name}.yaml", REPO_ROOT / folder / f"{name}.yaml"]
    else:
        candidates += [REPO_ROOT / folder / name]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in (REPO_ROOT / folder).glob("*.yaml"))
    hint = difflib.get_close_matches(Path(name).stem, known, n=3)
    raise RecipeError(
        f"no {folder[:-1]} named {name!r} (looked for {', '.join(str(c) for c in candidates)})"
        + (f"; did you mean {', '.join(hint)}?" if hint else f"; known: {', '.join(known)}")
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, RecipeError)
    if data is None:
        raise RecipeError(f"{path}: the file holds no keys (an empty recipe would silently run every default)")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of key: value, got {type(data).__name__}")
    return data


def load_recipe_dict(recipe: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The merged key/value mapping of a recipe and its chain of ``base:`` files.

    A ``base:`` names another recipe (e.g. an ablation on top of a paper run) or a
    shared file in ``training_configs/``.
    """
    if not _seen:
        path = find_file(recipe, "recipes")
    else:
        try:
            path = find_file(recipe, "recipes")
        except RecipeError:
            path = find_file(recipe, "training_configs")
    if path.resolve() in _seen:
        raise RecipeError(f"{path}: circular 'base:' chain")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    merged = load_recipe_dict(base, _seen + (path.resolve(),))
    merged.update(data)
    return merged


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Bring a YAML/CLI value to the field's simple type (YAML reads ``1e-6`` as a string)."""
    if value is None:
        return None
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    if bool in args:
        try:
            return parse_bool(value, name)
        except ValueError as err:
            raise RecipeError(str(err)) from None
    if float in args and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return value if int in args and isinstance(value, int) else float(value)
        except ValueError:
            if str in args:  # a word where a number may be one (tau_good: median)
                return value
            raise RecipeError(f"{name} must be a number, got {value!r}") from None
    if int in args and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise RecipeError(f"{name} must be an integer, got {value!r}") from None
    if args == (str,) and not isinstance(value, str):
        return str(value)
    return value


@dataclasses.dataclass
class ResolvedRecipe:
    name: str
    model: ModelArguments
    data: DataArguments
    launch: LaunchArguments
    training: UniDPOConfig
    values: dict[str, Any]  # the merged keys as written (before defaults)
    # A rule the recipe gave for tau_good (configs.TAU_GOOD_RULES: 'median'), to be applied to the
    # training pairs when they load (training.run); until then training.tau_good is TAU_GOOD_AT_LOAD.
    tau_good_rule: str | None = None
    # how `training` was built, to build it again with the number the rule gives (with_tau_good)
    training_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    check_devices: bool = dataclasses.field(default=False, repr=False, compare=False)

    def with_tau_good(self, value: float) -> "ResolvedRecipe":
        """This recipe with its tau_good rule replaced by the number it gave: the training config
        is built anew, as :func:`resolve` builds it, with ``tau_good=value``; ``self`` is left
        as it is (so a launcher's check of the data changes nothing)."""
        training = _training_config({**self.training_kwargs, "tau_good": float(value)}, self.check_devices,
                                    self.launch.num_processes)
        return dataclasses.replace(self, training=training, tau_good_rule=None)

    def to_json_dict(self) -> dict[str, Any]:
        """Every resolved value, once: ``warmup_ratio`` is folded into ``warmup_steps`` (the
        key the trainer reads; a float < 1 there is a fraction of all steps), a tau_good rule
        says what tau_good will be, and ``ignored_by_loss_type`` lists the keys the chosen
        loss does not read."""
        training = json.loads(self.training.to_json_string())
        if training.get("warmup_ratio") is not None:
            del training["warmup_ratio"]
        if self.tau_good_rule is not None:
            training["tau_good"] = TAU_GOOD_RULES[self.tau_good_rule]
        return {
            "recipe": self.name,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "launch": {**dataclasses.asdict(self.launch), "command": launch_command(self)},
            "training": training,
            "ignored_by_loss_type": ignored_by_loss_type(self.training.loss_type),
        }


def _training_config(train_kw: dict[str, Any], check_devices: bool, num_processes: int) -> UniDPOConfig:
    """Build the TrainingArguments subclass, adjusted to the machine's devices.

    With ``check_devices`` (inside the training processes), several processes on a
    machine without a GPU get ``use_cpu``: without it accelerate treats CPU ranks as
    independent single-process runs, every rank trains on the same batches and the
    global batch is wrong. Without ``check_devices`` (resolving a recipe to print or
    launch it), a bf16 recipe is accepted on a machine without a GPU: TrainingArguments
    would refuse it, but the run is meant for the machine it is launched on, which
    checks again.
    """
    if check_devices and num_processes > 1 and not torch.cuda.is_available():
        train_kw = {**train_kw, "use_cpu": True}
    if check_devices or not train_kw.get("bf16") or train_kw.get("use_cpu") or torch.cuda.is_available():
        return UniDPOConfig(**train_kw)
    config = UniDPOConfig(**{**train_kw, "use_cpu": True})
    config.use_cpu = False
    config.dataloader_pin_memory = train_kw.get("dataloader_pin_memory", True)
    return config


def resolve(recipe: str | None, overrides: list[str] | dict[str, Any] | None = None,
            num_processes: int | None = None, check_devices: bool = False) -> ResolvedRecipe:
    """Merge base config, recipe and overrides and build the dataclasses.

    ``num_processes`` is the real process count when known (inside a launched run);
    otherwise the recipe's ``num_processes`` is used to derive gradient accumulation.
    ``check_devices`` is set by the training processes (see :func:`_training_config`).
    """
    name = recipe or DEFAULT_RECIPE
    values = load_recipe_dict(name)
    values.update(parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {}))

    owner = _field_owner()
    per_class: dict[type, dict[str, Any]] = {cls: {} for cls in CONFIG_CLASSES}
    unknown = [k for k in values if k not in owner]
    if unknown:
        msgs = []
        for key in unknown:
            close = difflib.get_close_matches(key, owner, n=1, cutoff=0.6)
            msgs.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(f"recipe {name!r}: unknown key(s) {', '.join(msgs)}")
    hints = {cls: typing.get_type_hints(cls) for cls in CONFIG_CLASSES}
    hints[UniDPOConfig]["tau_good"] = float | str  # a recipe may name a rule (TAU_GOOD_RULES); the config holds numbers
    for key, value in values.items():
        cls = owner[key]
        per_class[cls][key] = _coerce(key, value, hints[cls].get(key))
    try:
        check_values({k: v for kw in per_class.values() for k, v in kw.items()}, _nullable_keys())
    except ValueError as err:
        raise RecipeError(f"recipe {name!r}: {err}") from None
    tau_good_rule = per_class[UniDPOConfig].get("tau_good")
    if isinstance(tau_good_rule, str):  # one of TAU_GOOD_RULES (checked): a number once the training pairs load
        per_class[UniDPOConfig]["tau_good"] = TAU_GOOD_AT_LOAD
    else:
        tau_good_rule = None

    launch = LaunchArguments(**per_class[LaunchArguments])
    if num_processes is not None:
        launch.num_processes = num_processes
    train_kw = per_class[UniDPOConfig]
    train_kw.setdefault("output_dir", f"outputs/{Path(name).stem}")
    try:
        launch.check()
        train_kw["gradient_accumulation_steps"] = derive_gradient_accumulation(
            train_kw.get("global_batch_size"),
            train_kw.get("per_device_train_batch_size", 8),
            launch.num_processes,
            train_kw.get("gradient_accumulation_steps"),
        )
        training = _training_config(train_kw, check_devices, launch.num_processes)
        model = ModelArguments(**per_class[ModelArguments])
        data = DataArguments(**per_class[DataArguments])
    except (ValueError, TypeError) as err:
        raise RecipeError(f"recipe {name!r}: {err}") from err
    return ResolvedRecipe(name=name, model=model, data=data, launch=launch, training=training, values=values,
                          tau_good_rule=tau_good_rule, training_kwargs=train_kw, check_devices=check_devices)


def accelerate_config_path(name: str) -> Path:
    return find_file(name, "accelerate_configs")


def _uses_deepspeed(config: Path) -> bool:
    try:
        data = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("distributed_type") == "DEEPSPEED"


def machine_args(launch: LaunchArguments, config: Path) -> list[str]:
    """The ``accelerate launch`` flags that place this machine in a multi-node run.

    Static rendezvous (the accelerate configs' ``rdzv_backend``): every machine names the
    same rank-0 host and port and its own ``machine_rank``. DeepSpeed runs get the
    ``standard`` multinode launcher (torchrun on each node, no pdsh/ssh) even from a
    config that does not set it.
    """
    args = []
    if launch.num_machines > 1:
        args += ["--num_machines", str(launch.num_machines), "--machine_rank", str(launch.machine_rank),
                 "--main_process_ip", str(launch.main_process_ip)]
        if _uses_deepspeed(config):
            args += ["--deepspeed_multinode_launcher", "standard"]
    if launch.main_process_port is not None:
        args += ["--main_process_port", str(launch.main_process_port)]
    return args


def launch_command(resolved: ResolvedRecipe, overrides: list[str] | None = None) -> list[str]:
    """The ``accelerate launch`` command line that runs this recipe (on this machine)."""
    recipe_path = find_file(resolved.name, "recipes")
    config = accelerate_config_path(resolved.launch.accelerate_config)
    cmd = [
        sys.executable, "-m", "alignment_unidpo.training.launch",  # accelerate launch; failures as lines
        "--config_file", str(config),
        "--num_processes", str(resolved.launch.num_processes),
        *machine_args(resolved.launch, config),
        str(REPO_ROOT / "scripts" / "run_unidpo.py"), str(recipe_path),
    ]
    return cmd + list(overrides or [])
