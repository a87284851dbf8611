"""The text of ``python -m alignment_unidpo.recipes --help`` (and ``make help``).

Everything is read from where it is defined: the make targets from the Makefile's header
comment, the recipe keys from the dataclass fields' ``metadata['help']`` and defaults,
the accelerate configs and recipes from their folders.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

from .base.paths import REPO_ROOT
from .configs import USED_BY_LOSS, VALUE_RULE_OF, DataArguments, LaunchArguments, ModelArguments, UniDPOConfig
from .resolve import DEFAULT_RECIPE, DEFAULT_WORLD_RECIPE

ENTRY_PREFIX = "#   "  # an entry of the Makefile's header comment (continuation lines are indented further)

USAGE = """usage: python -m alignment_unidpo.recipes [RECIPE] [--dry_run] [--debug] [--key=value ...]

Resolves RECIPE (default: recipes/{default}.yaml, {default_about}), checks every value, the
local model folders and the local data files, then runs `accelerate launch` (--dry_run: prints
the resolved recipe as JSON instead). --debug shows tracebacks instead of one `error:` line.
Overrides are parsed as YAML and win over the recipe, which wins over its `base:`.

`make train` with no RECIPE does not run recipes/{default}.yaml: it runs the world recipe
{world} in the preference world (python -m alignment_unidpo.world.experiment), as does
`make train RECIPE=toy-world-...`; any other RECIPE (RECIPE={default} too) runs as above."""
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SECTIONS = (
    ("model (ModelArguments)", ModelArguments),
    ("data (DataArguments)", DataArguments),
    ("launch (LaunchArguments)", LaunchArguments),
    ("training (UniDPOConfig, our keys on top of transformers.TrainingArguments)", UniDPOConfig),
)


def make_targets(makefile: Path = REPO_ROOT / "Makefile") -> list[str]:
    """The entries of the Makefile's header comment (``#   make ...`` lines, each with its
    indented continuation lines, and the notes among them), without the ``#   ``."""
    if not makefile.is_file():
        return []
    lines = []
    for line in makefile.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(ENTRY_PREFIX):
            lines.append(line[len(ENTRY_PREFIX):].rstrip())
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
    """``key [default]  help`` for each field, marking keys only some loss types read, with
    the allowed values of those :data:`~alignment_unidpo.configs.VALUE_RULES` checks (the
    text its error line says)."""
    lines = []
    for f in _own_fields(cls):
        text = f.metadata.get("help", "")
        if f.name in USED_BY_LOSS:
            text = f"({', '.join(USED_BY_LOSS[f.name])} only) " + text
        if f.name in VALUE_RULE_OF:
            text += f" Allowed: {VALUE_RULE_OF[f.name][1]}" + ("; null: unset." if f.default is None else ".")
        head = f"  {f.name} [default {_default(f)}]"
        lines.append(head)
        if text:
            lines += textwrap.wrap(text, 88, initial_indent="      ", subsequent_indent="      ")
    return lines


def leading_comment(path: Path) -> str:
    """The comment block a file starts with, its lines joined into one paragraph."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            if words or line.strip():
                break
            continue
        words.append(line.lstrip("#").strip())
    return " ".join(w for w in words if w)


def first_sentence(text: str) -> str:
    """Up to the first sentence end (``.``, ``!`` or ``?`` before a space); all of it when none."""
    return SENTENCE_END.split(text, maxsplit=1)[0]


def described(names_and_texts: list[tuple[str, str]], width: int = 88) -> list[str]:
    """``  NAME  text`` lines, the texts in one column, wrapped at spaces only (never mid-word)."""
    column = max(len(name) for name, _ in names_and_texts) + 4
    out = []
    for name, text in names_and_texts:
        out += textwrap.wrap(text, width, initial_indent=f"  {name}".ljust(column), subsequent_indent=" " * column,
                             break_long_words=False, break_on_hyphens=False) or [f"  {name}"]
    return out


def default_recipe_about() -> str:
    """What recipes/default.yaml is, from its own comment's first sentence, lower-cased start."""
    text = first_sentence(leading_comment(REPO_ROOT / "recipes" / f"{DEFAULT_RECIPE}.yaml")).rstrip(".")
    return text[:1].lower() + text[1:]


def help_text() -> str:
    usage, *paragraphs = USAGE.format(default=DEFAULT_RECIPE, default_about=default_recipe_about(),
                                      world=DEFAULT_WORLD_RECIPE).split("\n\n")
    out = [usage]
    for paragraph in paragraphs:
        out += ["", textwrap.fill(paragraph, 88, break_long_words=False, break_on_hyphens=False)]
    out += ["", "make targets:"]
    out += [f"  {line}" for line in make_targets()] or ["  (no Makefile found)"]
    out += ["", "accelerate configs (accelerate_configs/; ACCELERATE=NAME or --accelerate_config=NAME):"]
    configs = sorted((REPO_ROOT / "accelerate_configs").glob("*.yaml"))
    out += described([(p.stem, first_sentence(leading_comment(p))) for p in configs])
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
