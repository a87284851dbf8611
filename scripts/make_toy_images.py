"""Write the toy multimodal pairs of recipes/toy-multimodal.yaml: data/toy_multimodal/pairs.jsonl
and its PNGs (colour-naming questions, the authors' MM-RLHF pairs format)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alignment_unidpo.training.toy import write_toy_image_pairs  # noqa: E402

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "data" / "toy_multimodal"
    rows = write_toy_image_pairs(out)
    print(f"wrote {len(rows)} pairs to {out}")
