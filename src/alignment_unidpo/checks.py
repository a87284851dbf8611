"""What the launcher checks before ``accelerate launch`` (and before a dry run prints).

Range checks of every value happen when the recipe resolves (:func:`configs.check_values`).
Here, on top: local model folders exist (:func:`check_model_paths`) and local data files
validate row by row (:func:`check_data`, the same :class:`~.training.data.DataValidationError`
messages the run would give). Hub models and hub datasets are left to the run, except that
with ``HF_HUB_OFFLINE`` set a hub model must be in the local cache (:func:`check_hub_model`,
used by ``make data``; one line instead of a minute of retries and tracebacks).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub import is_offline_mode, try_to_load_from_cache

from .training.data import is_local_source, load_mixture
from .recipes import RecipeError, ResolvedRecipe
from .toy import is_toy

MODEL_PATH_KEYS = ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path")
# A hub repo counts as cached when one of these is in its cached snapshot: a model, an adapter, a tokenizer.
HUB_CACHE_MARKERS = ("config.json", "adapter_config.json", "tokenizer_config.json")


def looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name``) or a ``toy:`` model."""
    if is_toy(name):
        return False
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(("/", "\\"))


def local_model_problem(key: str, name: str) -> str | None:
    """``"<key>: no such local folder ..."`` when ``name`` is a local path that does not exist, else None."""
    if looks_local(name) and not Path(name).expanduser().exists():
        return f"{key}: no such local folder {name!r}"
    return None


def hub_model_problem(key: str, name: str, revision: str | None = None) -> str | None:
    """Why the hub model ``name`` cannot load, or None: with ``HF_HUB_OFFLINE`` set (as
    huggingface_hub reads it) it must be in the local cache at ``revision`` (default main).

    Local paths (existing or not: :func:`local_model_problem`) and ``toy:`` models pass, and
    online every hub id passes (the run downloads it).
    """
    if not is_offline_mode() or is_toy(name) or looks_local(name) or Path(name).expanduser().exists():
        return None
    if any(isinstance(try_to_load_from_cache(name, marker, revision=revision), str) for marker in HUB_CACHE_MARKERS):
        return None
    at = f" at revision {revision!r}" if revision else ""
    return (f"{key}: {name!r}{at} is not in the local Hugging Face cache ({hub_constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {name}) or unset HF_HUB_OFFLINE")


def check_hub_model(key: str, name: str, revision: str | None = None) -> None:
    """Raise RecipeError when :func:`hub_model_problem` finds one (for the launcher's checks)."""
    problem = hub_model_problem(key, name, revision)
    if problem:
        raise RecipeError(problem)


def check_model_paths(recipe: ResolvedRecipe) -> None:
    """A model, reference or tokenizer named by a local path that does not exist fails here."""
    for key in MODEL_PATH_KEYS:
        name = getattr(recipe.model, key)
        problem = local_model_problem(key, name) if name else None
        if problem:
            raise RecipeError(problem)


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
