"""Train the `default` recipe under every combination of the three speed switches and record,
per optimizer step, the per-pair c-NLL indicators next to the logged losses.

Run in-process by tests/test_switch_equivalence.py (one process) and, under
`accelerate launch --num_processes 2`, as ``python tests/switch_matrix.py OUT_ROOT [extra overrides]``
(DDP and ZeRO-3): each combination writes ``record.json`` and the model to ``OUT_ROOT/<name>``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import torch

from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.run import train
from alignment_unidpo.training.trainer import UniDPOTrainer

SWITCHES = ("precompute_ref_log_probs", "lean_logps", "padding_free")
COMBINATIONS = [dict(zip(SWITCHES, on)) for on in itertools.product((False, True), repeat=3)]
# SGD, so that equal gradients give equal weights (Adam would turn rounding in near-zero
# gradients into +-lr steps); a step large enough to move the policy off the reference.
COMMON = {
    "dataset_mixture": [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.2},
                        {"path": "data/toy_preferences_chat.jsonl", "fraction": 0.2}],
    "test_split_size": 16, "eval_strategy": "no", "save_strategy": "no", "max_steps": 3,
    "global_batch_size": 16, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
    "optim": "sgd", "learning_rate": 2.0, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
    "logging_steps": 1, "disable_tqdm": True, "report_to": "none", "logps_chunk_size": 37,
}


def name_of(combination: dict[str, bool]) -> str:
    return "+".join(k for k, on in combination.items() if on) or "plain"


class IndicatorRecordingTrainer(UniDPOTrainer):
    """Keeps every training pair's c-NLL indicator and policy log-prob per optimizer step
    (gathered from all processes, in the order of the global batch)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record: list[dict] = []

    def _store_metrics(self, metrics, split):
        super()._store_metrics(metrics, split)  # gathers every metric from all processes
        if split == "train":
            gathered = {name: self._metrics[split][name][-1].tolist()
                        for name in ("cnll_active", "logps/chosen", "score_margin")}
            self.record.append({"step": self.state.global_step, "cnll_active": gathered["cnll_active"],
                                "logps_chosen": gathered["logps/chosen"], "score_margin": gathered["score_margin"]})


def run_combination(combination: dict[str, bool], out: Path, cache: Path, extra: dict | None = None,
                    num_processes: int = 1) -> dict:
    values = {**COMMON, **combination, "output_dir": str(out), "ref_logps_cache_dir": str(cache), **(extra or {})}
    recipe = resolve("default", values, num_processes=num_processes, check_devices=True)
    captured = {}

    class Recorder(IndicatorRecordingTrainer):
        def train(self, *args, **kwargs):
            captured["trainer"] = self
            return super().train(*args, **kwargs)

    metrics = train(recipe, trainer_cls=Recorder)
    trainer = captured["trainer"]
    record = {"combination": combination, "steps": trainer.record, "metrics": metrics,
              "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
              "tolerance": trainer.nll_ref_gap_tolerance}
    if trainer.is_world_process_zero():
        (out / "record.json").write_text(json.dumps(record))
    return record


def main(argv: list[str]) -> int:
    import logging

    from alignment_unidpo.base.yamlio import parse_overrides

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    root, extra = Path(argv[0]), parse_overrides(argv[1:])
    for combination in COMBINATIONS:
        run_combination(combination, root / name_of(combination), root / "cache" / name_of(combination), extra,
                        num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
