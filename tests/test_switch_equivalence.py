"""The speed switches change no training numbers: every combination of precompute_ref_log_probs,
lean_logps and padding_free, on one process and on two (DDP, ZeRO-3), gives the plain
one-process run's c-NLL indicators, per-step losses, final weights and eval metrics.

Tolerances follow from float32 arithmetic: the switches reorder sums (other batch layouts,
chunked output layer, packed rows, all-reduce over ranks), which moves log-probs by a few ulp
(measured: <= 2e-7 relative) and losses by <= 1e-6 relative. SGD turns equal gradients into
equal weights (Adam would turn rounding in near-zero gradients into +-lr steps).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO_ROOT, two_rank_accelerate_config

sys.path.insert(0, os.path.dirname(__file__))
from switch_matrix import COMBINATIONS, name_of, run_combination  # noqa: E402

from alignment_unidpo.training.losses import ref_gap_indicator, uni_dpo_loss  # noqa: E402
from alignment_unidpo.training.trainer import REF_GAP_TOLERANCE  # noqa: E402

LOSS_RTOL = 1e-5      # measured <= 8e-7
WEIGHT_ATOL = 1e-5    # measured <= 2.2e-7 (weights are O(0.1), moved by O(1e-2))
EVAL_RTOL, EVAL_ATOL = 1e-4, 1e-5


def test_ref_gap_indicator_ignores_rounding_but_not_real_gaps():
    ref = torch.tensor([-4.6, -4.6, -0.2, -140.0, -140.0, -4.6])
    # rounding-sized differences (a few float32 ulp), then real drops of the policy
    pi = torch.tensor([-4.6 * (1 + 1e-6), -4.6 * (1 - 1e-6), -0.2 - 1e-7, -140.0 * (1 + 1e-6), -141.0, -4.7])
    strict = ref_gap_indicator(pi, ref, 0.0)
    tolerant = ref_gap_indicator(pi, ref, REF_GAP_TOLERANCE[torch.float32])
    assert strict.tolist() == [1, 0, 1, 1, 1, 1]  # the strict indicator of Eq. (11) fires on rounding
    assert tolerant.tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="nll_ref_gap_tolerance"):
        ref_gap_indicator(pi, ref, -1.0)


def test_uni_dpo_loss_takes_the_tolerance_and_zero_is_the_papers_indicator():
    pi_w, pi_l = torch.tensor([-4.6 * (1 + 1e-6), -5.0]), torch.tensor([-5.0, -5.0])
    ref_w, ref_l = torch.tensor([-4.6, -4.9]), torch.tensor([-5.0, -5.0])
    scores = dict(score_chosen=torch.tensor([9.0, 9.0]), score_rejected=torch.tensor([1.0, 1.0]))
    hp = dict(beta=2.0, qual_eta=0.7, perf_gamma=3.0, tau_ref=0.8, nll_lambda=0.2, tau_good=5.0)
    _, strict = uni_dpo_loss(pi_w, pi_l, ref_w, ref_l, *scores.values(), **hp)
    _, tolerant = uni_dpo_loss(pi_w, pi_l, ref_w, ref_l, *scores.values(), **hp, nll_ref_gap_tolerance=1e-5)
    assert strict["cnll_active"].tolist() == [1, 1]
    assert tolerant["cnll_active"].tolist() == [0, 1]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Every combination on one process, in-process."""
    root = tmp_path_factory.mktemp("one")
    return root, {name_of(c): run_combination(c, root / name_of(c), root / "cache" / name_of(c)) for c in COMBINATIONS}


def per_step(record):
    """(step -> [(policy chosen log-prob, indicator)] sorted), so process counts that order a step's
    pairs differently can be compared pair by pair."""
    steps = {}
    for entry in record["steps"]:
        steps.setdefault(entry["step"], []).extend(zip(entry["logps_chosen"], entry["cnll_active"]))
    return {step: sorted(pairs) for step, pairs in steps.items()}


def assert_matches_plain(record, out, plain, plain_out):
    label = name_of(record["combination"])
    got, want = per_step(record), per_step(plain)
    assert got.keys() == want.keys(), label
    for step in want:
        assert [i for _, i in got[step]] == [i for _, i in want[step]], f"{label}: indicators differ at step {step}"
        torch.testing.assert_close(torch.tensor([p for p, _ in got[step]]), torch.tensor([p for p, _ in want[step]]),
                                   rtol=LOSS_RTOL, atol=0)
    assert record["losses"] == pytest.approx(plain["losses"], rel=LOSS_RTOL), label
    weights, plain_weights = load_file(out / "model.safetensors"), load_file(plain_out / "model.safetensors")
    assert weights.keys() == plain_weights.keys()
    for key in plain_weights:
        torch.testing.assert_close(weights[key], plain_weights[key], rtol=0, atol=WEIGHT_ATOL, msg=f"{label}: {key}")
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_cnll_active", "eval_w_perf"):
        assert record["metrics"][key] == pytest.approx(plain["metrics"][key], rel=EVAL_RTOL, abs=EVAL_ATOL), (label, key)


@pytest.mark.slow  # trains every switch combination; two-process launches
def test_the_comparison_is_not_vacuous(one_process):
    """The indicator fires for some pairs and not others, and training moves the weights."""
    root, records = one_process
    indicators = [i for entry in records["plain"]["steps"] for i in entry["cnll_active"]]
    assert 0 < sum(indicators) < len(indicators)
    from alignment_unidpo.training.models import load_tokenizer
    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.toy import build_toy_model

    start = build_toy_model("toy:tiny-llama", load_tokenizer(resolve("default").model)).state_dict()
    trained = load_file(root / "plain" / "model.safetensors")
    assert max((trained[k] - start[k]).abs().max().item() for k in trained) > 100 * WEIGHT_ATOL


@pytest.mark.slow  # trains every switch combination; two-process launches
@pytest.mark.parametrize("combination", COMBINATIONS[1:], ids=name_of)
def test_one_process_every_switch_combination_matches_plain(one_process, combination):
    root, records = one_process
    name = name_of(combination)
    assert_matches_plain(records[name], root / name, records["plain"], root / "plain")


@pytest.mark.slow  # trains every switch combination; two-process launches
@pytest.mark.parametrize("backend", ["ddp", "zero3"])
def test_two_processes_every_switch_combination_matches_one_plain_process(one_process, tmp_path, backend):
    """One `accelerate launch` with two ranks trains all eight combinations (tests/switch_matrix.py)."""
    config = two_rank_accelerate_config(backend, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
         str(REPO_ROOT / "tests" / "switch_matrix.py"), str(tmp_path / "runs")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    if backend == "zero3":
        assert "reference model wrapped by DeepSpeed for inference (ZeRO stage 3)" in proc.stderr
    root, records = one_process
    for combination in COMBINATIONS:
        out = tmp_path / "runs" / name_of(combination)
        record = json.loads((out / "record.json").read_text())
        assert record["metrics"]["train_samples"] == records["plain"]["metrics"]["train_samples"]
        assert_matches_plain(record, out, records["plain"], root / "plain")


@pytest.mark.parametrize("tolerance, fires_at_first_step", [(None, False), (0.0, True)])
def test_a_reference_off_by_rounding_selects_no_pairs(tmp_path, monkeypatch, tolerance, fires_at_first_step):
    """Precomputed reference log-probs that differ from the policy's by ~1e-6 relative (what another
    batch layout gives in low precision) select no c-NLL pairs at the first step, where the
    policy equals the reference; the strict indicator of Eq. (11) (tolerance 0) selects them."""
    from alignment_unidpo.training.trainer import UniDPOTrainer

    compute = UniDPOTrainer.compute_reference_logps

    def off_by_rounding(self, ds, split):
        values = compute(self, ds, split)
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            values[key] = values[key] * (1 - 1e-6)  # log-probs < 0: the reference looks slightly better
        return values

    monkeypatch.setattr(UniDPOTrainer, "compute_reference_logps", off_by_rounding)
    combination = dict(precompute_ref_log_probs=True, lean_logps=False, padding_free=False)
    record = run_combination(combination, tmp_path / "run", tmp_path / "cache",
                             {"nll_ref_gap_tolerance": tolerance, "max_steps": 1})
    first_step = [i for entry in record["steps"] if entry["step"] == 0 for i in entry["cnll_active"]]
    assert (sum(first_step) > 0) == fires_at_first_step
