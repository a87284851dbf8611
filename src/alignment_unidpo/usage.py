"""The text of ``python -m alignment_unidpo.recipes --help`` (and ``make help``).

Everything is read from where it is defined: the make targets from the Makefile's header
comment, the recipe keys from the dataclass fields' ``metadata['help']`` and defaults,
the accelerate configs and recipes from their folders.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from .configs import USED_BY_LOSS, DataArguments, LaunchArguments, ModelArguments, UniDPOConfig
from .base.paths import REPO_ROOT

USAGE = """usage: python -m alignment_unidpo.recipes [RECIPE] [--dry_run] [--debug] [--key=value ...]

Resolves RECIPE (default: recipes/default.yaml), checks every value, the local model
folders and the local data files, then runs `accelerate launch` (--dry_run: prints the
resolved recipe as JSON instead). --debug shows tracebacks instead of one `error:` line.
Overrides are parsed as YAML and win over the recipe, which wins over its `base:`."""
SECTIONS = (
    ("model (ModelArguments)", ModelArguments),
    ("data (DataArguments)", DataArguments),
    ("launch (LaunchArguments)", LaunchArguments),
    ("training (UniDPOConfig, our keys on top of transformers.TrainingArguments)", UniDPOConfig),
)


def make_targets(makefile: Path = REPO_ROOT / "Makefile") -> list[str]:
    """The ``#   make ...`` lines of the Makefile's header comment."""
    if not makefile.is_file():
        return []
    lines = []
    for line in makefile.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.lstrip("# ").startswith("make"):
            lines.append(line.lstrip("# "))
    return lines


def _own_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a class defines itself (for UniDPOConfig: not the inherited TrainingArguments ones)."""
    own = cls.__dict__.get("__annotations__", {})
    return [f for f in dataclasses.fields(cls) if f.init and f.name in own]


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return "required"


def key_lines(cls: type) -> list[str]:
    """``key [default]  help`` for each field, marking keys only some loss types read."""
    lines = []
    for f in _own_fields(cls):
        text = f.metadata.get("help", "")
        if f.name in USED_BY_LOSS:
            text = f"({', '.join(USED_BY_LOSS[f.name])} only) " + text
        head = f"  {f.name} [default {_default(f)}]"
        lines.append(head)
        if text:
            lines += textwrap.wrap(text, 88, initial_indent="      ", subsequent_indent="      ")
    return lines


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def help_text() -> str:
    out = [USAGE, "", "make targets:"]
    out += [f"  {line}" for line in make_targets()] or ["  (no Makefile found)"]
    out += ["", "accelerate configs (accelerate_configs/; ACCELERATE=NAME or --accelerate_config=NAME):"]
    out += [f"  {p.stem:<15}{_first_comment(p)}" for p in sorted((REPO_ROOT / "accelerate_configs").glob("*.yaml"))]
    recipes = sorted(p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml"))
    out += ["", "recipes (recipes/; RECIPE=NAME):"]
    out += textwrap.wrap(", ".join(recipes), 88, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    out += ["", "recipe keys (set in a recipe YAML or as --key=value):"]
    for title, cls in SECTIONS:
        out += ["", title] + key_lines(cls)
    out += ["", "Every other transformers.TrainingArguments field is accepted as well (learning_rate,",
            "num_train_epochs, per_device_train_batch_size, gradient_accumulation_steps, warmup_steps,",
            "lr_scheduler_type, logging_steps, save_strategy, eval_strategy, bf16, seed, output_dir, ...)."]
    return "\n".join(out)
