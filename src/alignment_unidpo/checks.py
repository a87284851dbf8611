"""What the launcher checks before ``accelerate launch`` (and before a dry run prints).

Range checks of every value happen when the recipe resolves (:func:`configs.check_values`).
Here, on top, before any model or dataset loads:

* recipe problems, always errors: local model folders exist (:func:`check_model_paths`);
  the local data validates row by row and, after the same filtering and splitting as the
  run (:func:`check_data`), leaves training pairs and, when evaluation is asked for, eval
  pairs;
* problems of this machine (:func:`environment_problems`): the trackers of ``report_to``
  are installed and, for Weights & Biases, have credentials or an offline mode; the
  output folders can be written; with ``HF_HUB_OFFLINE`` set, hub models and datasets are
  in the local cache (:func:`hub_model_problem`, which ``make data`` uses too: one line
  instead of a minute of retries and tracebacks). A real launch refuses them; a dry run (often made on another
  machine than the one that trains) prints them as ``warning:`` lines and in the JSON.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .configs import loss_of
from .training.data import is_local_source, load_mixture, resolve_image_root
from .base.errors import RecipeError
from .resolve import ResolvedRecipe
from .training.reference import precomputes_reference
from .training.toy import is_toy

MODEL_PATH_KEYS = ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path")
# pip commands that install each tracker's package at the version setup.py pins
TRACKER_INSTALL = {"wandb": "pip install -e '.[wandb]'", "tensorboard": "pip install -e '.[tensorboard]'"}
WANDB_LOCAL_MODES = ("offline", "disabled", "dryrun")
# A hub model counts as cached when one of these is in its cached snapshot: a model, an adapter, a tokenizer.
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


def check_model_paths(recipe: ResolvedRecipe) -> None:
    """A model, reference or tokenizer named by a local path that does not exist fails here."""
    for key in MODEL_PATH_KEYS:
        name = getattr(recipe.model, key)
        problem = local_model_problem(key, name) if name else None
        if problem:
            raise RecipeError(problem)


# --- this machine: trackers, writable folders, the hub cache when offline ----------------

def wandb_has_credentials(environ: dict[str, str] | None = None) -> bool:
    """WANDB_API_KEY, or a ``wandb login`` entry in the netrc file for the W&B host."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def tracker_problems(report_to: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Why the trackers of ``report_to`` would fail once the run starts (empty when they would not)."""
    from transformers.integrations import get_available_reporting_integrations

    environ = os.environ if environ is None else environ
    available = get_available_reporting_integrations()
    problems = []
    for name in report_to:
        if name not in available:
            install = TRACKER_INSTALL.get(name, f"install the package of the {name} integration")
            problems.append(f"report_to: {name}, but its package is not installed here: {install}, "
                            "or pass --report_to=none")
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if "wandb" in report_to and "wandb" in available and mode not in WANDB_LOCAL_MODES \
            and not wandb_has_credentials(environ):
        problems.append("report_to: wandb, but there are no W&B credentials: export WANDB_API_KEY (or run "
                        "`wandb login`), or export WANDB_MODE=offline to log locally and `wandb sync` later; "
                        "--report_to=none turns logging off")
    return problems


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or the closest ancestor that exists (where the run would create it)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def writable_problem(key: str, folder: str | Path) -> str | None:
    """Whether files can be created in ``folder`` (or where it would be created): a probe file
    is made and removed. None when they can."""
    path = Path(folder).expanduser().absolute()
    where = nearest_existing(path)
    if not where.is_dir():
        return f"{key} '{folder}': {where} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=where)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        return f"{key} '{folder}': cannot write in {where} ({err.strerror or err})"
    return None


def output_problems(recipe: ResolvedRecipe) -> list[str]:
    """The run's output folder and, when it is used, the reference log-prob cache."""
    args = recipe.training
    folders = [("output_dir", args.output_dir)]
    if precomputes_reference(args) and args.ref_logps_cache_dir:
        folders.append(("ref_logps_cache_dir", args.ref_logps_cache_dir))
    return [p for key, folder in folders if (p := writable_problem(key, folder))]


def in_hub_cache(repo_id: str, repo_type: str = "model", revision: str | None = None,
                 filenames: tuple[str, ...] = ()) -> bool:
    """Whether the local Hugging Face cache holds ``repo_id`` (each of ``filenames``, when given;
    else any snapshot of it). Asks no server."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.file_download import repo_folder_name

    if filenames:
        return all(isinstance(try_to_load_from_cache(repo_id, name, revision=revision, repo_type=repo_type), str)
                   for name in filenames)
    snapshots = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type) / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def not_cached_message(key: str, repo_id: str, revision: str | None = None, repo_type: str = "model") -> str:
    """The line for a repository the cache lacks offline: the revision named (and downloaded) when one is given."""
    from huggingface_hub import constants

    at, pin = (f" at revision {revision!r}", f" --revision {revision}") if revision else ("", "")
    kind = "dataset " if repo_type == "dataset" else ""
    return (f"{key}: {kind}{repo_id!r}{at} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {'--repo-type dataset ' if kind else ''}"
            f"{repo_id}{pin}) or unset HF_HUB_OFFLINE")


def hub_model_problem(key: str, name: str, revision: str | None = None) -> str | None:
    """Why the hub model ``name`` cannot load, or None: with ``HF_HUB_OFFLINE`` set (as
    huggingface_hub reads it) it must be in the local cache at ``revision`` (default main;
    the line names the revision, and downloads it, when one is given).

    Local paths (existing or not: :func:`local_model_problem`) and ``toy:`` models pass, and
    online every hub id passes (the run downloads it).
    """
    from huggingface_hub import is_offline_mode

    if not is_offline_mode() or is_toy(name) or looks_local(name) or Path(name).expanduser().exists():
        return None
    if any(in_hub_cache(name, revision=revision, filenames=(marker,)) for marker in HUB_CACHE_MARKERS):
        return None
    return not_cached_message(key, name, revision)


def check_hub_model(key: str, name: str, revision: str | None = None) -> None:
    """Raise RecipeError when :func:`hub_model_problem` finds one (for the launcher's checks)."""
    problem = hub_model_problem(key, name, revision)
    if problem:
        raise RecipeError(problem)


def hub_problems(recipe: ResolvedRecipe) -> list[str]:
    """Offline only: hub models, tokenizers and datasets the run needs but the cache lacks."""
    from huggingface_hub import is_offline_mode

    if not is_offline_mode():
        return []
    model = recipe.model
    keys = ["model_name_or_path", "tokenizer_name_or_path"]
    if loss_of(recipe.training).needs_reference:
        keys.append("ref_model_name_or_path")
    revision = None if model.model_revision == "main" else model.model_revision  # the default goes unnamed
    problems = [p for key in keys if getattr(model, key)
                and (p := hub_model_problem(key, getattr(model, key), revision))]
    for key in ("dataset_mixture", "eval_dataset_mixture"):
        for spec in getattr(recipe.data, key) or []:
            if isinstance(spec, dict) and not is_local_source(spec) and not _dataset_cached(spec):
                problems.append(not_cached_message(key, str(spec.get("path")), spec.get("revision"), "dataset"))
    return problems


def _dataset_cached(spec: dict[str, Any]) -> bool:
    files = spec.get("data_files")
    files = (files,) if isinstance(files, str) else tuple(files) if isinstance(files, list) else ()
    return in_hub_cache(str(spec.get("path")), "dataset", spec.get("revision"), files)


def image_root_problems(recipe: ResolvedRecipe) -> list[str]:
    """Mixture entries whose ``image_root`` folder is not on this machine (image data)."""
    problems = []
    for key in ("dataset_mixture", "eval_dataset_mixture"):
        for i, spec in enumerate(getattr(recipe.data, key) or []):
            root = spec.get("image_root") if isinstance(spec, dict) else None
            if root is not None and not (folder := resolve_image_root(root)).is_dir():
                problems.append(f"{key}[{i}].image_root: no such folder {folder} (the images of {spec.get('path')}; "
                                "see docs/multimodal.md)")
    return problems


def environment_problems(recipe: ResolvedRecipe) -> list[str]:
    """What this machine lacks for the run: trackers, writable folders, the hub cache offline,
    image folders."""
    return (tracker_problems(recipe.training.report_to or []) + output_problems(recipe) + hub_problems(recipe)
            + image_root_problems(recipe))


# --- the data, counted by the run's own code ------------------------------------------

def _all_local(recipe: ResolvedRecipe) -> bool:
    mixtures = [recipe.data.dataset_mixture or [], recipe.data.eval_dataset_mixture or []]
    return all(is_local_source(spec) for mixture in mixtures for spec in mixture)


def _tokenizer_is_at_hand(recipe: ResolvedRecipe) -> bool:
    name = recipe.model.tokenizer_name_or_path or recipe.model.model_name_or_path
    if is_toy(name) or Path(name).expanduser().is_dir():
        return True
    return in_hub_cache(name, revision=recipe.model.model_revision, filenames=("tokenizer_config.json",))


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars from ``datasets`` while the launcher checks (the run shows its own)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def check_data(recipe: ResolvedRecipe) -> None:
    """Validate the local sources row by row; when every source is local and the tokenizer is
    at hand (toy, a folder or cached), also build the splits exactly as the run does
    (:func:`~.training.run.build_datasets`: filtering, split, tokenisation, over-long prompts
    dropped) and refuse a recipe that leaves no training pairs, or no eval pairs while
    ``eval_strategy`` asks for evaluation."""
    load = dict(seed=recipe.training.seed, system_prompt=recipe.data.system_prompt,
                require_scores=loss_of(recipe.training).needs_scores)
    for key in ("dataset_mixture", "eval_dataset_mixture"):
        mixture = getattr(recipe.data, key)
        local = [spec for spec in mixture or [] if is_local_source(spec)]
        if local or (key == "dataset_mixture" and not mixture):
            load_mixture(local, **load)
    if _all_local(recipe) and _tokenizer_is_at_hand(recipe):
        # imported only here: they bring the trainer's modules, which `make data` (a user of
        # this module's hub checks) never needs
        from .training.models import load_tokenizer
        from .training.run import build_datasets, image_collator

        tokenizer = load_tokenizer(recipe.model)
        with quiet_datasets():
            train, _ = build_datasets(recipe, tokenizer)  # raises when a split it needs is empty
        image_collator(recipe, tokenizer, train)  # image pairs: refuses what image batches do not support


def preflight(recipe: ResolvedRecipe, dry_run: bool = False) -> list[str]:
    """Every launcher check. Recipe and data problems raise RecipeError or DataValidationError;
    problems of this machine raise too, or, in a ``dry_run``, are returned as warnings."""
    check_model_paths(recipe)
    problems = environment_problems(recipe)
    if problems and not dry_run:
        raise RecipeError("; ".join(problems))
    check_data(recipe)
    return problems
