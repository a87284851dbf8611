"""LoRA runs as models users can ship.

* :func:`record_base_model` sets the adapter's ``base_model_name_or_path`` before it is
  saved, so the adapter names its base. A toy base (``toy:<name>``, built in memory) has no
  path: its weights are saved to ``<output_dir>/base_model``. A local base folder is
  recorded as an absolute path, a hub id as it is.
* :func:`relativize_base_model` (run by the trainer after each save) rewrites a saved
  adapter_config.json that names the run's own ``base_model`` folder to a path relative to
  the adapter: ``base_model`` in the run folder, ``../base_model`` in a ``checkpoint-N``.
  A run folder can then be moved or copied. peft and transformers read that path relative
  to the working directory, so ``AutoPeftModelForCausalLM.from_pretrained(".")`` works from
  inside the run folder; this package's loaders resolve it against the adapter itself.
* :func:`resolve_base_model` finds the base an adapter loads on: when it records a saved
  ``base_model`` (relative now; an absolute path in runs saved before, perhaps of a folder
  since moved, or of the original of a copy), the run's own ``base_model`` folder; else the
  hub id or folder recorded, checked before anything loads.
  :func:`load_causal_lm` loads a full model or a LoRA run that way (evaluation, datagen).
* :func:`merge_lora` (``merge_lora: true`` after training, or ``make merge RUN=<dir>`` /
  ``python -m alignment_unidpo.training.merge RUN [OUT]`` for an existing run) loads the base and the
  adapter on the CPU, merges the adapter into the weights and writes a full model
  (safetensors) and the tokenizer to ``<run>/merged``, loadable with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from ..base.cli import entry_point
from ..base.errors import RecipeError
from ..base.files import write_text_atomic
from .toy import is_toy
from .checkpoints import BASE_MODEL_DIR, CHECKPOINT_RE, MERGED_DIR

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def record_base_model(model, model_name_or_path: str, output_dir: str | Path, is_main_process: bool) -> str:
    """Point every adapter config of the PEFT ``model`` at its base; returns that name or path.

    For a toy base the main process saves the base weights (adapters unloaded, on a copy
    of the state) into ``output_dir/base_model`` first. Call on every process before saving.
    The path stays absolute in memory (peft reads the base's config.json from it when it
    saves); :func:`relativize_base_model` makes the saved one relative.
    """
    base = str(Path(model_name_or_path).resolve()) if Path(model_name_or_path).is_dir() else model_name_or_path
    if is_toy(model_name_or_path):
        folder = Path(output_dir).resolve() / BASE_MODEL_DIR
        if is_main_process:
            save_toy_base(model, folder)
        base = str(folder)
    for config in model.peft_config.values():
        config.base_model_name_or_path = base
    return base


def save_toy_base(peft_model, folder: Path) -> None:
    """The frozen base weights of a (non-sharded) PEFT model, without its LoRA layers."""
    base = peft_model.get_base_model()
    state = {k: v for k, v in base.state_dict().items() if "lora_" not in k}
    # LoRA wraps each target Linear: its weight is stored as "<module>.base_layer.weight"
    state = {k.replace(".base_layer.", "."): v.detach().cpu().contiguous() for k, v in state.items()}
    clean = type(base)(base.config)
    missing, unexpected = clean.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "rotary" not in m]:
        raise RuntimeError(f"toy base does not round-trip: missing {missing}, unexpected {unexpected}")
    clean.save_pretrained(folder, safe_serialization=True)


def relativize_base_model(adapter_dir: str | Path, output_dir: str | Path) -> None:
    """After a save into ``adapter_dir`` (the run folder or one of its checkpoints): when its
    adapter_config.json names ``output_dir/base_model`` by absolute path, name it relative
    to ``adapter_dir`` instead. Anything else (no adapter, a hub id, another folder) is left."""
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    own = Path(output_dir).resolve() / BASE_MODEL_DIR
    if config.get("base_model_name_or_path") != str(own):
        return
    config["base_model_name_or_path"] = os.path.relpath(own, Path(adapter_dir).resolve())
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True))  # as peft writes it


def own_base_model(adapter_dir: Path) -> Path | None:
    """The base saved in the adapter's own run: ``adapter_dir/base_model``, or for an adapter
    in ``<run>/checkpoint-N`` the run's ``base_model``; None when there is none."""
    folder = adapter_dir.resolve()
    candidates = [folder / BASE_MODEL_DIR]
    if CHECKPOINT_RE.match(folder.name):
        candidates.append(folder.parent / BASE_MODEL_DIR)
    return next((c for c in candidates if c.is_dir()), None)


def is_saved_base(recorded: str | None) -> bool:
    """Whether a recorded base is what this package saves into a run (a folder named
    ``base_model``: relative now, absolute before) or nothing loadable (empty, ``toy:``),
    rather than a hub id or folder the user chose."""
    return not recorded or is_toy(recorded) or Path(recorded).name == BASE_MODEL_DIR


def names_a_folder(name: str) -> bool:
    """Whether a recorded base is a path (absolute, ``./``, ``../``, the run's own
    ``base_model``) rather than a hub id (which never starts with a dot)."""
    return os.path.isabs(name) or name.startswith(".") or name == BASE_MODEL_DIR


def resolve_base_model(adapter_dir: str | Path) -> str:
    """The base model to load ``adapter_dir``'s adapter on, found without loading anything.

    When the adapter records a saved base (:func:`is_saved_base`) and its run has one
    (:func:`own_base_model`), that one is used, wherever the recorded path points: a moved
    or copied run loads its own copy. Otherwise a hub id is returned as recorded and a
    folder (absolute, or relative to ``adapter_dir``) must exist: a RecipeError names the
    config, the recorded path and the fix.
    """
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise RecipeError(f"{adapter_dir} holds no {ADAPTER_CONFIG}: not a LoRA run (one trained with use_peft: true)")
    recorded = json.loads(config_path.read_text()).get("base_model_name_or_path")
    own = own_base_model(adapter_dir)
    if own is not None and is_saved_base(recorded):
        if recorded and Path(adapter_dir, recorded).resolve() != own:  # a run saved before relative paths
            logger.warning("%s records base_model_name_or_path %r; using the run's own base %s",
                           config_path, recorded, own)
        return str(own)
    if not recorded or is_toy(recorded):
        raise RecipeError(f"{config_path}: base_model_name_or_path is {recorded!r}; set it to the base model's hub id "
                     "or folder, then merge again")
    if not names_a_folder(recorded):
        return recorded
    folder = adapter_dir / recorded  # an absolute recorded path stays as it is
    if not folder.is_dir():
        raise RecipeError(f"{config_path}: base_model_name_or_path {recorded!r} is not a folder (moved or deleted?); "
                     f"put the base model back there, copy it to {adapter_dir / BASE_MODEL_DIR}, or set "
                     "base_model_name_or_path to its hub id or folder")
    return str(folder)


def load_lora_run(adapter_dir: str | Path, **kwargs):
    """``adapter_dir``'s adapter on its base (:func:`resolve_base_model`) as a ``PeftModel``;
    ``kwargs`` go to the base's ``AutoModelForCausalLM.from_pretrained``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_base_model(adapter_dir), **kwargs)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def is_lora_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a LoRA adapter and no full model of its own (no config.json)."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def load_causal_lm(name_or_path: str | Path, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)``, except that a LoRA run
    loads on the base :func:`resolve_base_model` finds (not on the path peft would read)."""
    from transformers import AutoModelForCausalLM

    if is_lora_run(name_or_path):
        return load_lora_run(name_or_path, **kwargs)
    return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)


def merge_lora(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Merge ``run_dir``'s adapter into its base and save a full model + tokenizer; returns the folder."""
    import torch
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / MERGED_DIR
    model = load_lora_run(run_dir, dtype="auto", low_cpu_mem_usage=True)
    with torch.no_grad():
        merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(out)
    logger.info("merged LoRA adapter of %s into %s: saved the full model to %s", run_dir, merged.name_or_path, out)
    return out


@entry_point
def main(argv: list[str]) -> int:
    """``python -m alignment_unidpo.training.merge RUN_DIR [OUT_DIR]``: write RUN_DIR/merged (or OUT_DIR)."""
    if not argv or argv[0] in ("-h", "--help") or len(argv) > 2:
        print(main.__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    print(merge_lora(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
