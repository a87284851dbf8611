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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: multi-process launches and long end-to-end runs; `pytest -m 'not slow'` skips them")
