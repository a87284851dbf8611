"""Fixtures and hooks only; the helpers tests import are in ``tests/helpers.py``."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `TEST_TORCH_THREADS=1 make test` runs the in-process tests with another intra-op thread
# count than OMP_NUM_THREADS gives, to shake out tolerances that hold only for one
# reduction order (launched runs set OMP_NUM_THREADS=1 themselves).
if os.environ.get("TEST_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["TEST_TORCH_THREADS"]))


@pytest.fixture
def toy_tokenizer():
    from alignment_unidpo.training.toy import build_toy_tokenizer

    return build_toy_tokenizer()


@pytest.fixture
def write_jsonl(tmp_path):
    def write(rows, name="pairs.jsonl"):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return write


@pytest.fixture
def count_reference_work(monkeypatch):
    """Counts reference forwards over whole datasets and reference-model loads (training.run.train)."""
    import alignment_unidpo.training.run as run
    from alignment_unidpo.training.trainer import UniDPOTrainer

    calls = {"computed": 0, "loaded_reference": []}
    compute, load = UniDPOTrainer.compute_reference_logps, run.load_policy_and_reference

    def counting_compute(self, ds, split):
        calls["computed"] += 1
        return compute(self, ds, split)

    def counting_load(*args, need_reference, **kwargs):
        calls["loaded_reference"].append(need_reference)
        return load(*args, need_reference=need_reference, **kwargs)

    monkeypatch.setattr(UniDPOTrainer, "compute_reference_logps", counting_compute)
    monkeypatch.setattr(run, "load_policy_and_reference", counting_load)
    return calls


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: multi-process launches and long end-to-end runs; `pytest -m 'not slow'` skips them")
