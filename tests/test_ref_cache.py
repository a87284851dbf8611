"""Precomputed reference log-probs: same training as the live reference, and a cache that
is reused only for the same key, rebuilt when damaged, and written atomically."""

import json
import logging

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import alignment_unidpo.training.ref_cache as ref_cache
from alignment_unidpo.base import files
import alignment_unidpo.training.run as run
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.ref_cache import (
    ReferenceLogpsCache, dataset_fingerprint, expected_token_counts, row_hashes,
)
from alignment_unidpo.training.tokenization import IGNORE_INDEX, UNLABELLED_COLUMNS, PreferenceCollator

SMALL_DATA = [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.15},
              {"path": "data/toy_preferences_chat.jsonl", "fraction": 0.15}]


def train(tmp_path, name, **overrides):
    values = {
        "dataset_mixture": SMALL_DATA, "test_split_size": 8, "eval_strategy": "no", "save_strategy": "no",
        "output_dir": str(tmp_path / name), "disable_tqdm": True, "logging_steps": 1, "max_steps": 3,
        "per_device_train_batch_size": 4, "global_batch_size": 4, "per_device_eval_batch_size": 4,
        "lr_scheduler_type": "constant", "warmup_ratio": 0.0, "use_cpu": True,
        "ref_logps_cache_dir": str(tmp_path / "cache"), **overrides,
    }
    metrics = run.train(resolve("default", values, num_processes=1))
    history = json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
    return metrics, history, load_file(tmp_path / name / "model.safetensors")


def cache_files(tmp_path):
    return sorted((tmp_path / "cache").glob("*.safetensors"))


@pytest.mark.parametrize("loss_type", ["uni_dpo", "dpo"])
def test_precomputed_reference_trains_like_the_live_reference(tmp_path, loss_type, count_reference_work):
    # SGD: equal gradients give equal weights (Adam turns rounding in tiny gradients into +-lr steps)
    sgd = dict(optim="sgd", learning_rate=1.0)
    live_metrics, live_history, live_weights = train(tmp_path, "live", loss_type=loss_type, **sgd)
    assert count_reference_work["computed"] == 0
    metrics, history, weights = train(tmp_path, "cached", loss_type=loss_type, precompute_ref_log_probs=True, **sgd)
    assert count_reference_work["computed"] == 2  # train and eval splits
    assert len(cache_files(tmp_path)) == 2
    steps = lambda h: [e for e in h if "loss" in e]  # noqa: E731
    assert len(steps(history)) == 3
    for step, (got, want) in enumerate(zip(steps(history), steps(live_history))):
        for key in ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "w_perf", "grad_norm"):
            # At the first step the policy is the reference: every reward is 0 up to rounding, and
            # the strict metric `chosen reward > rejected reward` counts rounding (a metric only;
            # the loss's indicator has a tolerance, see losses.ref_gap_indicator).
            if key in want and not (step == 0 and key == "rewards/accuracies"):
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/chosen"):
        assert metrics[key] == pytest.approx(live_metrics[key], rel=1e-4, abs=1e-6), key
    for name in live_weights:
        torch.testing.assert_close(weights[name], live_weights[name], rtol=0, atol=1e-5)


def test_cache_is_reused_without_loading_the_reference_and_only_for_the_same_key(tmp_path, count_reference_work):
    first, _, _ = train(tmp_path, "first", precompute_ref_log_probs=True)
    assert count_reference_work == {"computed": 2, "loaded_reference": [True]}
    second, _, _ = train(tmp_path, "second", precompute_ref_log_probs=True, learning_rate=1e-3)
    assert count_reference_work == {"computed": 2, "loaded_reference": [True, False]}  # no new work, no model
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-6)
    # one split's file gone (and its per-example twin): the reference is loaded again, and only that
    # split is recomputed
    gone = cache_files(tmp_path)[0]
    gone.unlink()
    next((tmp_path / "cache").glob(f"rows-*/{gone.name}")).unlink()
    train(tmp_path, "partial", precompute_ref_log_probs=True)
    assert count_reference_work == {"computed": 3, "loaded_reference": [True, False, True]}
    assert len(cache_files(tmp_path)) == 2
    # a different truncation length is a different key, even where no pair is long enough to change
    train(tmp_path, "other", precompute_ref_log_probs=True, max_length=95)
    assert count_reference_work["computed"] == 5
    assert len(cache_files(tmp_path)) == 4


@pytest.fixture
def small_cache(tmp_path, toy_tokenizer):
    from alignment_unidpo.training.tokenization import tokenize_row

    rows = [{"messages": [{"role": "user", "content": f"Reverse: w{i}"}], "chosen": f"{i}w", "rejected": "x" * (i + 1),
             "score_chosen": 8.0, "score_rejected": 3.0} for i in range(6)]
    ds = datasets.Dataset.from_list(rows).map(tokenize_row, fn_kwargs={"tokenizer": toy_tokenizer, "max_length": 64,
                                                                       "max_prompt_length": 32})
    counts = expected_token_counts(ds)
    values = {"ref_chosen_logps": -np.arange(6, dtype=np.float32), "ref_rejected_logps": -np.ones(6, np.float32),
              **counts}
    cache = ReferenceLogpsCache(tmp_path / "cache", {"reference": "test"})
    return cache, ds, values


def test_key_covers_the_token_ids(small_cache):
    cache, ds, values = small_cache
    cache.save(ds, values)
    assert cache.load(ds) is not None
    changed = ds.map(lambda r: {"chosen_input_ids": r["chosen_input_ids"][:-1]})
    assert dataset_fingerprint(changed) != dataset_fingerprint(ds)
    assert cache.load(changed) is None
    assert not cache.path(ds.select([1, 0, 2, 3, 4, 5])).exists()  # the whole-dataset file is per row order
    assert ReferenceLogpsCache(cache.directory, {"reference": "other"}).load(ds) is None


def test_text_keys_are_pinned(small_cache):
    """The keys of text datasets, whole-dataset and per pair, as computed before image pairs could
    be cached (a text key has no image terms): caches written before keep being read."""
    import hashlib

    cache, ds, _ = small_cache
    shifted = ds.map(lambda r, i: {"rejected_unlabelled": int(i == 2)}, with_indices=True)
    pinned = {  # dataset fingerprint, whole-dataset file, sha256 of the per-pair hashes
        "plain": ("def8740a1c93c477fca8e442919c13bc4f8f87b8cb02dcd30eb3e7e3ab0431ce",
                  "59357f2b4dda03e8a1aa72c899522bfd95193b921ccabd86c69548b83f0f78ab.safetensors",
                  "8993e62ea34bcc737745d5808a014a65df57da6cd61b1aa99b98648199cffa47"),
        "unlabelled": ("aada18f78c28b30648f04b811a9b8781c4a9b98df17ada8e016cbd801743c33b",
                       "e14975e8abca9931a318c65017086365d4fd9e8fb8575daecdff79414108a3df.safetensors",
                       "bb955a3bf9ef4ba1045aae101ade3ffd83a8d875ba4c0898c32880d454787ef3"),
    }
    for name, data in (("plain", ds), ("unlabelled", shifted)):
        got = (dataset_fingerprint(data), cache.path(data).name, hashlib.sha256(row_hashes(data).tobytes()).hexdigest())
        assert got == pinned[name], name
    assert cache.rows_dir().name == "rows-e42620b0a4218289a2ecb3b357bf7b79"


def test_any_order_split_or_subset_of_cached_pairs_is_served_per_example(small_cache):
    cache, ds, values = small_cache
    cache.save(ds.select([0, 1, 2]), {k: v[:3] for k, v in values.items()})  # e.g. seed 0's train split
    cache.save(ds.select([3, 4, 5]), {k: v[3:] for k, v in values.items()})  # and its eval split
    order = [5, 0, 3, 1]  # another seed's split: other pairs, another order
    got = cache.load(ds.select(order))
    assert got is not None and not cache.path(ds.select(order)).exists()
    for column in values:
        assert np.array_equal(got[column], values[column][order]), column
    extra = datasets.concatenate_datasets([ds.select([0]), ds.select([1]).map(
        lambda r: {"chosen_input_ids": r["chosen_input_ids"][:-1]})])
    assert cache.load(extra) is None  # one pair not cached: computed, not guessed
    assert ReferenceLogpsCache(cache.directory, {"reference": "other"}).load(ds.select(order)) is None


def test_another_seeds_shuffle_and_split_pays_no_reference_pass(tmp_path, count_reference_work):
    data = [{"path": "data/toy_preferences_text.jsonl"}]  # all of it: a fraction would sample other pairs per seed
    train(tmp_path, "seed0", precompute_ref_log_probs=True, seed=0, dataset_mixture=data)
    assert count_reference_work == {"computed": 2, "loaded_reference": [True]}
    train(tmp_path, "seed1", precompute_ref_log_probs=True, seed=1, dataset_mixture=data)  # other split and order
    assert count_reference_work == {"computed": 2, "loaded_reference": [True, False]}


def test_unlabelled_answer_ids_are_in_the_key_and_the_counts(small_cache):
    """An answer whose own prompt is longer than the shared one (its splits disagree) starts with
    unlabelled ids: the counts leave them out, as the collator does, and the key changes; a
    dataset whose counts are all 0 keeps the fingerprint it had before the columns existed."""
    cache, ds, values = small_cache
    assert set(UNLABELLED_COLUMNS) <= set(ds.column_names) and not any(ds["rejected_unlabelled"])
    assert dataset_fingerprint(ds.remove_columns(list(UNLABELLED_COLUMNS))) == dataset_fingerprint(ds)
    shifted = ds.map(lambda r, i: {"rejected_unlabelled": int(i == 2)}, with_indices=True)
    assert dataset_fingerprint(shifted) != dataset_fingerprint(ds)
    counts = expected_token_counts(shifted)
    assert counts["ref_rejected_tokens"][2] == values["ref_rejected_tokens"][2] - 1
    assert np.array_equal(counts["ref_chosen_tokens"], values["ref_chosen_tokens"])
    n = len(shifted)
    for padding_free in (False, True):
        batch = PreferenceCollator(pad_token_id=0, padding_free=padding_free)(list(shifted))
        labels = batch["labels"]
        if padding_free:  # one row: count per sequence
            ids = batch["sequence_ids"][0]
            labelled = torch.stack([(labels[0][ids == i] != IGNORE_INDEX).sum() for i in range(2 * n)])
        else:
            labelled = (labels[:, 1:] != IGNORE_INDEX).sum(1)
        assert labelled[:n].tolist() == counts["ref_chosen_tokens"].tolist()
        assert labelled[n:].tolist() == counts["ref_rejected_tokens"].tolist()
    cache.save(ds, values)
    assert cache.load(shifted) is None  # nor served per example: the counts are part of each pair's hash


@pytest.mark.parametrize("damage", ["truncate", "flip_value_byte", "garbage"])
def test_damaged_cache_file_is_detected_and_never_read(small_cache, damage, caplog):
    cache, ds, values = small_cache
    path = cache.save(ds, values)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_value_byte":
        data[-5] ^= 0x40  # inside the tensor payload: the header still parses
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert cache.load(ds) is None
    assert "will be rebuilt" in caplog.text
    cache.save(ds, values)  # the rebuild replaces it
    loaded = cache.load(ds)
    np.testing.assert_array_equal(loaded["ref_chosen_logps"], values["ref_chosen_logps"])


def test_cache_inconsistent_with_the_dataset_is_refused(small_cache):
    cache, ds, values = small_cache
    bad = {**values, "ref_chosen_tokens": values["ref_chosen_tokens"] + 1}
    cache.save(ds, bad)  # a well-formed file, checksum and all, with wrong token counts
    assert cache.load(ds) is None


def test_failed_write_leaves_the_previous_file_intact(small_cache, monkeypatch):
    cache, ds, values = small_cache
    path = cache.save(ds, values)
    before = path.read_bytes()

    def crash_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(ref_cache, "save_file", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        cache.save(ds, {**values, "ref_chosen_logps": values["ref_chosen_logps"] + 1})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, cache.rows_dir().name])
    assert [p.name for p in cache.rows_dir().iterdir()] == [path.name]  # no temporary file left behind


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from alignment_unidpo.base.files import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    os.kill(os.getpid(), signal.SIGKILL)  # killed after creating its (0-byte) temporary file
"""


def test_a_killed_write_leaves_no_temporary_file_behind(small_cache):
    """A writer killed mid-write leaves its temp file; the next save or load removes it, but
    never a live writer's file, an unrelated file, or a recent temp file of another host."""
    import os
    import subprocess
    import sys
    import time

    cache, ds, values = small_cache
    target = cache.path(ds)
    target.parent.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)])
    assert proc.wait() == -9
    orphans = [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1 and orphans[0].stat().st_size == 0
    assert f".{files.host_tag()}.{proc.pid}." in orphans[0].name
    live = target.parent / f".{target.name}.{files.host_tag()}.{os.getpid()}.abc123.tmp"
    elsewhere = target.parent / f".{target.name}.otherhost.1.abc123.tmp"
    old_elsewhere = target.parent / f".{target.name}.otherhost.2.abc123.tmp"
    old_unnamed = target.parent / f".{target.name}.k3j9x_2a.tmp"  # the pre-pid naming
    unrelated = target.parent / "notes.tmp"
    for path in (live, elsewhere, old_elsewhere, old_unnamed, unrelated):
        path.write_bytes(b"")
    hour_ago = time.time() - 2 * files.STALE_TEMP_SECONDS
    for path in (old_elsewhere, old_unnamed):
        os.utime(path, (hour_ago, hour_ago))
    assert cache.load(ds) is None  # nothing cached yet, but the orphans are gone
    left = sorted(p.name for p in target.parent.iterdir())
    assert left == sorted([live.name, elsewhere.name, unrelated.name])
    live.unlink()
    cache.save(ds, values)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([elsewhere.name, unrelated.name, target.name,
                                                                      cache.rows_dir().name])


@pytest.mark.parametrize("switch", [{"label_assistant_header": True}, {"append_eos": True},
                                    {"truncation_rule": "authors"}, {"bos_for_plain_prompts": False},
                                    {"eos_as_bos": True}, {"plain_answer_suffix": "<|im_end|>"},
                                    {"system_turn": "authors", "label_assistant_header": True}])
def test_every_tokenisation_switch_is_in_the_cache_key(tmp_path, toy_tokenizer, switch):
    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.run import reference_logps_cache

    def key(**overrides):
        recipe = resolve("default", {"ref_logps_cache_dir": str(tmp_path), **overrides})
        return reference_logps_cache(recipe, toy_tokenizer).key_fields

    assert key(**switch) != key()
    if "system_turn" in switch:  # against the same rules with the default system_turn
        assert key(**switch) != key(label_assistant_header=True)
    # system_turn came later: at its default it is left out, so the caches written before keep their key
    assert "system_turn" not in key()["tokenization"]
