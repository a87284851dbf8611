"""LoRA runs as models users can ship.

* :func:`record_base_model` sets the adapter's ``base_model_name_or_path`` before it is
  saved, so ``PeftModel.from_pretrained`` / ``AutoPeftModelForCausalLM`` load the adapter on
  its own. A toy base (``toy:<name>``, built in memory) has no path: its weights are saved
  to ``<output_dir>/base_model`` and the adapter points there (absolute path).
* :func:`merge_lora` (``merge_lora: true`` after training, or ``make merge RUN=<dir>`` /
  ``python -m alignment_unidpo.training.merge RUN [OUT]`` for an existing run) loads the base and the
  adapter on the CPU, merges the adapter into the weights and writes a full model
  (safetensors) and the tokenizer to ``<run>/merged``, loadable with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..cli import entry_point
from ..toy import is_toy
from .checkpoints import _error

logger = logging.getLogger(__name__)

BASE_MODEL_DIR = "base_model"
MERGED_DIR = "merged"


def record_base_model(model, model_name_or_path: str, output_dir: str | Path, is_main_process: bool) -> str:
    """Point every adapter config of the PEFT ``model`` at its base; returns that name or path.

    For a toy base the main process saves the base weights (adapters unloaded, on a copy
    of the state) into ``output_dir/base_model`` first. Call on every process before saving.
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


def merge_lora(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Merge ``run_dir``'s adapter into its base and save a full model + tokenizer; returns the folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    config_path = run_dir / "adapter_config.json"
    if not config_path.is_file():
        raise _error(f"{run_dir} holds no adapter_config.json: merging needs a LoRA run (use_peft: true)")
    base_name = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if not base_name or is_toy(base_name):
        raise _error(f"{config_path}: base_model_name_or_path is {base_name!r}; set it to the base model's hub id "
                     "or folder, then merge again")
    out = Path(out_dir) if out_dir is not None else run_dir / MERGED_DIR
    base = AutoModelForCausalLM.from_pretrained(base_name, dtype="auto", low_cpu_mem_usage=True)
    with torch.no_grad():
        merged = PeftModel.from_pretrained(base, str(run_dir)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(out)
    logger.info("merged LoRA adapter of %s into %s: saved the full model to %s", run_dir, base_name, out)
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
    from alignment_unidpo.training.merge import main as package_main

    sys.exit(package_main())
