"""What the launcher checks before ``accelerate launch`` (and before a dry run prints).

Range checks of every value happen when the recipe resolves (:func:`configs.check_values`).
Here, on top: local model folders exist (:func:`check_model_paths`) and local data files
validate row by row (:func:`check_data`, the same :class:`~.training.data.DataValidationError`
messages the run would give). Hub models and hub datasets are left to the run.
"""

from __future__ import annotations

from pathlib import Path

from .training.data import is_local_source, load_mixture
from .recipes import RecipeError, ResolvedRecipe
from .toy import is_toy

MODEL_PATH_KEYS = ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path")


def looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name``) or a ``toy:`` model."""
    if is_toy(name):
        return False
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(("/", "\\"))


def check_model_paths(recipe: ResolvedRecipe) -> None:
    """A model, reference or tokenizer named by a local path that does not exist fails here."""
    for key in MODEL_PATH_KEYS:
        name = getattr(recipe.model, key)
        if name and looks_local(name) and not Path(name).expanduser().exists():
            raise RecipeError(f"{key}: no such local folder {name!r}")


def check_data(recipe: ResolvedRecipe) -> None:
    """Load and validate the local sources of the train and eval mixtures (hub ones are skipped)."""
    load = dict(seed=recipe.training.seed, system_prompt=recipe.data.system_prompt,
                require_scores=recipe.training.loss_type == "uni_dpo")
    for key in ("dataset_mixture", "eval_dataset_mixture"):
        mixture = getattr(recipe.data, key)
        local = [spec for spec in mixture or [] if is_local_source(spec)]
        if local or (key == "dataset_mixture" and not mixture):
            load_mixture(local, **load)


def preflight(recipe: ResolvedRecipe) -> None:
    """Every launcher check; raises RecipeError or DataValidationError."""
    check_model_paths(recipe)
    check_data(recipe)
