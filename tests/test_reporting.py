"""What a run reports: run-level closing figures, a marked last window, tracker output."""

import json

import pytest

from alignment_unidpo.plots import curve, log_history
from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.run import train

SMALL = {"dataset_mixture": [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.3}],
         "test_split_size": 0, "eval_strategy": "no", "disable_tqdm": True, "use_cpu": True,
         "per_device_train_batch_size": 8, "global_batch_size": 8}


def test_closing_train_metrics_are_run_level_and_the_short_last_window_is_marked(tmp_path):
    out = tmp_path / "run"
    train(resolve("default", {**SMALL, "max_steps": 7, "logging_steps": 3, "output_dir": str(out)}, num_processes=1))
    history = log_history(out)
    windows = [h for h in history if "window_pairs" in h]
    assert [(h["step"], h["window_steps"], h["window_pairs"]) for h in windows] == [(3, 3, 24), (6, 3, 24), (7, 1, 8)]
    assert [h.get("partial_window", False) for h in windows] == [False, False, True]
    closing = json.loads((out / "train_results.json").read_text())
    for key in ("rewards/margins", "rewards/accuracies", "w_perf", "logps/chosen", "cnll_active"):
        run_level = sum(h[key] * h["window_pairs"] for h in windows) / sum(h["window_pairs"] for h in windows)
        assert closing[key] == pytest.approx(run_level, rel=1e-6), key
    # the closing figures are not the last window's (what they were before)
    assert closing["rewards/margins"] != pytest.approx(windows[-1]["rewards/margins"], rel=1e-3)
    rho = sum(h["spearman/score_vs_reward_margin"] * h["window_pairs"] for h in windows) / sum(h["window_pairs"] for h in windows)
    assert closing["spearman/score_vs_reward_margin"] == pytest.approx(rho, rel=1e-6)
    # plots draw one point per full window: neither the short last one nor the closing summary
    assert curve(history, "rewards/margins")[0] == [3, 6]


def test_report_to_tensorboard_writes_event_files(tmp_path):
    out = tmp_path / "run"
    train(resolve("default", {**SMALL, "max_steps": 2, "logging_steps": 1, "report_to": "tensorboard",
                              "output_dir": str(out)}, num_processes=1))
    events = list(out.rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    # the pinned `tensorboard` extra, part of ".[dev]" that `make test` installs
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/rewards/margins" in tags and "train/loss" in tags
