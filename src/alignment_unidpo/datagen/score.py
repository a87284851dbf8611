"""Stage 2, score: one number per sample, and a correct/incorrect label for math.

Each sample is scored by the ``score.scorer`` of the config (:mod:`.scorers`: a reward
model, an external judge's file, a process reward model, none, or a scorer registered by a
package above datagen, such as the preference world's noisy judge). ``verifier: math``
labels each sample with :func:`alignment_unidpo.generation.math_grading.grade` against the
prompt's ground truth. Scoring is sharded like generation: score shard ``k`` is computed
from generation shard ``k`` and written atomically. The scorer is built with the config plus
``progress`` (whether to draw progress bars). A scorer with a ``stats()`` (the
``openai_judge``: requests, cache hits, retries, unparsable ratings) has it written after
each shard to ``scorer-stats-p<process>.json`` in the score folder: what that process's last
run did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..base.files import write_jsonl_atomic, write_text_atomic
from ..base.jsonio import read_json_records
from ..generation.math_grading import grade
from .generate import my_shards, shard_path
from .scorers import SCORERS


def math_labels(rows: list[dict[str, Any]]) -> list[list[bool]]:
    return [[grade(smp["text"], r["answer"]).correct for smp in r["samples"]] for r in rows]


def run_score(cfg: dict[str, Any], gen_dir: Path, folder: Path, n_shards: int, process_index: int = 0,
              num_processes: int = 1, progress: bool = True) -> dict[str, int]:
    """Score this process's missing shards: rows gain ``scores`` (and ``correct`` with the verifier)."""
    from tqdm.auto import tqdm

    s = cfg["score"]
    folder.mkdir(parents=True, exist_ok=True)
    todo = [k for k in my_shards(n_shards, process_index, num_processes) if not shard_path(folder, k).is_file()]
    counts = {"shards": n_shards, "cached": n_shards - len(todo), "scored": 0}
    if not todo:
        return counts
    scorer = SCORERS[s["scorer"]].build({**cfg, "progress": progress})
    stats = getattr(scorer, "stats", None)  # a scorer that counts its work (the openai_judge)
    for k in tqdm(todo, desc=f"score [{process_index}]", unit="shard", disable=not progress):
        src = shard_path(gen_dir, k)
        rows = list(read_json_records(src))
        fields = scorer(rows, src)
        # a scorer may drop samples it could not score (the judge's unparsable ratings): label those kept
        kept = [{**r, "samples": f.get("samples", r["samples"])} for r, f in zip(rows, fields)]
        labels = math_labels(kept) if s["verifier"] == "math" else None
        out = []
        for i, (r, f) in enumerate(zip(rows, fields)):
            row = {**r, "scores": f["scores"]}
            if labels is not None:
                row["correct"] = labels[i]
            row.update({key: value for key, value in f.items() if key != "scores"})
            out.append(row)
        write_jsonl_atomic(shard_path(folder, k), out)
        counts["scored"] += 1
        if stats is not None:
            write_text_atomic(folder / f"scorer-stats-p{process_index}.json", json.dumps(stats(), indent=1))
    return counts
