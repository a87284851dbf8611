"""Vision-language preference data (issue 23): image rows, the authors' MM-RLHF pairs format,
checks before launch. Tiny generated PNGs only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignment_unidpo.base.errors import DataValidationError
from alignment_unidpo.training.data import DropReport, load_mixture


def make_images(folder, n=3, size=(28, 28)):
    """``n`` small PNGs of different colours under ``folder/img/``; their paths relative to ``folder``."""
    from PIL import Image

    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img/{i}.png"
        Image.new("RGB", size, (40 * i, 255 - 40 * i, 90)).save(folder / name)
        names.append(name)
    return names


def authors_row(image, i=0, **overrides):
    """A record in the authors' pairs format (Multimodal/uni_dpo_image_only_mcq_short_long_50k.json)."""
    row = {"instruction": f"<image>\nWhat colour is square {i}?", "chosen": "Green.", "rejected": "Blue.",
           "score_chosen": 3.0, "score_rejected": 1.0, "images": [image]}
    row.update(overrides)
    return row


def write_json(path, rows):
    path.write_text(json.dumps(rows))
    return str(path)


def load(path, image_root, **kw):
    spec = {"path": path, "image_root": str(image_root) if image_root is not None else None}
    return load_mixture([{k: v for k, v in spec.items() if v is not None}], seed=0, **kw)


def test_the_authors_pairs_format_is_read_with_image_root(tmp_path):
    images = make_images(tmp_path / "root")
    path = write_json(tmp_path / "pairs.json", [authors_row(name, i) for i, name in enumerate(images)])
    ds = load(path, tmp_path / "root")
    assert len(ds) == 3 and set(ds.column_names) >= {"messages", "chosen", "rejected", "images"}
    row = sorted(ds, key=lambda r: r["row"])[0]
    assert row["messages"] == [{"role": "user", "content": "<image>\nWhat colour is square 0?"}]
    assert row["images"] == [str(tmp_path / "root" / "img/0.png")]
    assert (row["score_chosen"], row["score_rejected"]) == (3.0, 1.0)


def test_absolute_image_paths_need_no_root(tmp_path):
    images = make_images(tmp_path)
    path = write_json(tmp_path / "pairs.json", [authors_row(str(tmp_path / images[0]))])
    assert load(path, None)[0]["images"] == [str(tmp_path / images[0])]


@pytest.mark.parametrize("case, field, message", [
    ("missing file", "'images'[0]", "no such image file"),
    ("unreadable", "'images'[0]", "unreadable image"),
    ("too few placeholders", "'images'", "2 image(s) but 1 '<image>' placeholder(s)"),
    ("too many placeholders", "'images'", "1 image(s) but 2 '<image>' placeholder(s)"),
    ("placeholder without images", "'images'", "missing, but the prompt has '<image>'"),
    ("placeholder in answer", "'chosen'", "belongs in the prompt"),
    ("not a list", "'images'", "expected a non-empty list"),
])
def test_bad_image_rows_fail_naming_file_row_and_field(tmp_path, case, field, message):
    images = make_images(tmp_path)
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png at all")
    bad = {
        "missing file": authors_row("img/nope.png"),
        "unreadable": authors_row("img/broken.png"),
        "too few placeholders": authors_row(images[0], images=images[:2]),
        "too many placeholders": authors_row(images[0], instruction="<image><image> Compare."),
        "placeholder without images": {k: v for k, v in authors_row(images[0]).items() if k != "images"},
        "placeholder in answer": authors_row(images[0], chosen="<image> green"),
        "not a list": authors_row(images[0], images=[]),
    }[case]
    path = write_json(tmp_path / "pairs.json", [authors_row(images[1]), bad])
    with pytest.raises(DataValidationError) as err:
        load(path, tmp_path)
    text = str(err.value)
    assert f"{path} (train), row 2, field {field}" in text and message in text, text


def test_a_missing_image_root_is_named(tmp_path):
    path = write_json(tmp_path / "pairs.json", [authors_row("img/0.png")])
    with pytest.raises(DataValidationError, match="key 'image_root': no such folder"):
        load(path, tmp_path / "absent")


def test_text_and_image_rows_do_not_mix(tmp_path):
    from helpers import good_row

    images = make_images(tmp_path)
    path = write_json(tmp_path / "pairs.json", [authors_row(images[0]), good_row(1)])
    with pytest.raises(DataValidationError, match="row 2, field 'images': missing, while 1 other"):
        load(path, tmp_path)
    text = write_json(tmp_path / "text.json", [good_row(i) for i in range(3)])
    only_images = write_json(tmp_path / "images.json", [authors_row(images[0])])
    with pytest.raises(DataValidationError, match="mixes text sources with image sources"):
        load_mixture([{"path": text}, {"path": only_images, "image_root": str(tmp_path)}], seed=0)


def test_text_rows_are_unchanged(tmp_path):
    from helpers import good_row

    path = write_json(tmp_path / "text.json", [good_row(i) for i in range(3)])
    ds = load_mixture([{"path": path}], seed=0, report=DropReport())
    assert "images" not in ds.column_names


def test_the_launcher_reports_a_bad_image_row_and_a_missing_image_root(tmp_path):
    from alignment_unidpo.checks import image_root_problems, preflight
    from alignment_unidpo.resolve import resolve

    images = make_images(tmp_path)
    path = write_json(tmp_path / "pairs.json", [authors_row(images[0]), authors_row("img/nope.png")])
    recipe = resolve("qwen2-vl-2b", {"dataset_mixture": [{"path": path, "image_root": str(tmp_path)}],
                                     "report_to": "none", "output_dir": str(tmp_path / "out")})
    with pytest.raises(DataValidationError, match=r"row 2, field 'images'\[0\]: no such image file"):
        preflight(recipe, dry_run=True)
    assert image_root_problems(resolve("qwen2-vl-2b")) == [
        "dataset_mixture[0].image_root: no such folder data/MM-RLHF (the images of psp-dada/Uni-DPO; "
        "see docs/multimodal.md)"]


# --- tokenisation through the processor, the collator and the forward (tiny random Qwen2-VL) ---
@pytest.fixture(scope="module")
def vl():
    from alignment_unidpo.training.toy import build_toy_vl_model, build_toy_vl_processor

    processor = build_toy_vl_processor()
    return processor, build_toy_vl_model(processor).eval()


def image_pairs(folder, sizes=((56, 56), (28, 56), (56, 28))):
    """Normalised image rows as training.data makes them, with images of different sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.png"
        Image.new("RGB", size, (60 * i, 120, 255 - 60 * i)).save(path)
        rows.append({"messages": [{"role": "user", "content": f"<image>\nWhat colour is it, number {i}?"}],
                     "chosen": "Blue" + "e" * i, "rejected": "Red.", "score_chosen": 3.0, "score_rejected": 1.0,
                     "images": [str(path)]})
    return rows


def test_image_rows_tokenise_with_image_tokens_in_the_unlabelled_prompt(tmp_path, vl):
    from alignment_unidpo.training.multimodal import tokenize_image_row

    processor, _ = vl
    row = image_pairs(tmp_path)[0]
    out = tokenize_image_row(row, processor, max_length=200, max_prompt_length=150)
    assert out["image_grid_thw"] == [[1, 4, 4]]  # 56x56 pixels: 4x4 patches of 14, merged 2x2 into 4 tokens
    prompt = processor.tokenizer.decode(out["prompt_input_ids"])
    assert prompt == ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 4
                      + "<|vision_end|>\nWhat colour is it, number 0?<|im_end|>\n<|im_start|>assistant\n")
    assert processor.tokenizer.decode(out["chosen_input_ids"]) == "Blue<|im_end|>\n"
    assert not out["image_cut"] and not out["truncated"]


def test_a_cut_that_reaches_an_image_drops_the_row(tmp_path, vl):
    from alignment_unidpo.training.multimodal import tokenize_image_row

    processor, _ = vl
    row = image_pairs(tmp_path)[0]
    row = {**row, "messages": [{"role": "user", "content": "x" * 40 + "<image>?"}]}
    full = tokenize_image_row(row, processor, max_length=200, max_prompt_length=150)
    n = len(full["prompt_input_ids"])  # <|im_start|> user\n (6) + 40 x, then <|vision_start|> at index 46
    cut = lambda removed: tokenize_image_row(row, processor, max_length=n - removed + 5,  # noqa: E731
                                             max_prompt_length=n - removed)
    assert not full["image_cut"] and not full["truncated"]
    assert not cut(46)["image_cut"] and cut(46)["truncated"]  # text before the image only: kept
    assert cut(47)["image_cut"]  # the image's start marker: dropped
    assert cut(49)["image_cut"]  # inside the image's tokens: dropped


def test_the_collator_repeats_the_images_for_chosen_and_rejected_and_refuses_padding_free(tmp_path, vl):
    from alignment_unidpo.training.multimodal import ImagePreferenceCollator, tokenize_image_row

    processor, _ = vl
    rows = image_pairs(tmp_path)
    features = [{**r, **tokenize_image_row(r, processor, 200, 150)} for r in rows]
    batch = ImagePreferenceCollator(pad_token_id=processor.pad_token_id, processor=processor)(features)
    grids = [[1, 4, 4], [1, 4, 2], [1, 2, 4]]  # 56x56, 28x56 (w x h), 56x28
    assert batch["image_grid_thw"].tolist() == grids + grids
    assert batch["pixel_values"].shape[0] == 2 * (16 + 8 + 8)
    image_id = processor.image_token_id
    assert [(row == image_id).sum().item() for row in batch["input_ids"]] == [4, 2, 2] * 2
    assert (batch["labels"][batch["input_ids"] == image_id] == -100).all()
    with pytest.raises(ValueError, match="padding_free is not supported for image batches"):
        ImagePreferenceCollator(pad_token_id=0, padding_free=True, processor=processor)


@pytest.mark.parametrize("lean", [False, True])
def test_batched_sequence_logps_equal_per_example_forwards(tmp_path, vl, lean):
    from alignment_unidpo.training.multimodal import ImagePreferenceCollator, tokenize_image_row
    from alignment_unidpo.training.trainer import model_sequence_logps

    processor, model = vl
    rows = image_pairs(tmp_path)
    features = [{**r, **tokenize_image_row(r, processor, 200, 150)} for r in rows]
    collate = ImagePreferenceCollator(pad_token_id=processor.pad_token_id, processor=processor)
    with torch.no_grad():
        batched = model_sequence_logps(model, collate(features), lean=lean, chunk_size=7)
        single = [model_sequence_logps(model, collate([f]), lean=lean, chunk_size=7) for f in features]
    for field in ("sum", "mean", "num_tokens"):
        per = [getattr(s, field) for s in single]
        expected = torch.stack([p[0] for p in per] + [p[1] for p in per])
        torch.testing.assert_close(getattr(batched, field), expected.to(getattr(batched, field).dtype),
                                   rtol=1e-5, atol=2e-5)
    assert (batched.num_tokens > 0).all()


@pytest.mark.parametrize("loss_type", ["uni_dpo", "dpo", "simpo"])
def test_the_trainer_loss_on_an_image_batch_is_the_text_maths_on_per_example_logps(tmp_path, vl, loss_type):
    """The trainer's loss on an image batch (policy and live reference, one concatenated forward
    each) equals the loss table's function applied to log-probs from per-example forwards."""
    import copy

    import datasets

    from alignment_unidpo.configs import UniDPOConfig, loss_of
    from alignment_unidpo.training.losses import function_of
    from alignment_unidpo.training.multimodal import ImagePreferenceCollator, tokenize_image_row
    from alignment_unidpo.training.trainer import UniDPOTrainer, model_sequence_logps

    processor, model = vl
    policy = copy.deepcopy(model).train()
    reference = copy.deepcopy(model)
    with torch.no_grad():  # the policy moves away from the reference
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    rows = image_pairs(tmp_path)
    features = [{**r, **tokenize_image_row(r, processor, 200, 150)} for r in rows]
    collate = ImagePreferenceCollator(pad_token_id=processor.pad_token_id, processor=processor)
    args = UniDPOConfig(output_dir=str(tmp_path / "o"), loss_type=loss_type, tau_good=2.5, tau_ref=2.0, beta=2.0,
                        precompute_ref_log_probs=False, use_cpu=True, report_to="none", per_device_train_batch_size=3)
    trainer = UniDPOTrainer(model=policy, ref_model=reference, args=args, data_collator=collate,
                            train_dataset=datasets.Dataset.from_list(features), processing_class=processor.tokenizer)
    batch = collate(features)
    with torch.no_grad():
        loss = trainer.preference_loss(trainer.model, batch, "train")
        entry = loss_of(args)
        pick = (lambda s: s.mean) if entry.averages(args) else (lambda s: s.sum)  # noqa: E731
        per_pi = [pick(model_sequence_logps(policy, collate([f]))) for f in features]
        inputs = [torch.stack([p[0] for p in per_pi]), torch.stack([p[1] for p in per_pi])]
        if entry.needs_reference:
            per_ref = [pick(model_sequence_logps(reference, collate([f]))) for f in features]
            inputs += [torch.stack([p[0] for p in per_ref]), torch.stack([p[1] for p in per_ref])]
        if entry.needs_scores:
            inputs += [batch["score_chosen"], batch["score_rejected"]]
        expected, _ = function_of(entry)(*inputs, **entry.kwargs_from(args, nll_ref_gap_tolerance=
                                                                       trainer.nll_ref_gap_tolerance))
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-5, atol=1e-6)


# --- the toy multimodal recipe, end to end on CPU ---------------------------------------------
def test_the_toy_multimodal_recipe_trains_end_to_end_offline(tmp_path):
    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.run import train

    recipe = resolve("toy-multimodal", {"output_dir": str(tmp_path / "out"), "max_steps": 2, "eval_steps": 2,
                                        "use_cpu": True}, num_processes=1)
    metrics = train(recipe)
    assert metrics["train_samples"] == 56 and "eval_loss" in metrics
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if isinstance(v, float))
    assert (tmp_path / "out" / "model.safetensors").exists()
    # the folder loads as a whole VLM: the image processor is saved beside the tokenizer, as trained with
    from transformers import AutoImageProcessor

    from alignment_unidpo.training.toy import build_toy_vl_processor
    saved = AutoImageProcessor.from_pretrained(tmp_path / "out").to_dict()
    trained = build_toy_vl_processor().image_processor.to_dict()
    assert saved == trained and saved["size"] == trained["size"]


def test_the_launcher_refuses_padding_free_image_batches_and_admits_the_reference_cache():
    from alignment_unidpo.base.errors import RecipeError
    from alignment_unidpo.checks import preflight
    from alignment_unidpo.resolve import resolve

    preflight(resolve("toy-multimodal"), dry_run=True)
    preflight(resolve("toy-multimodal", ["--precompute_ref_log_probs=true"]), dry_run=True)
    with pytest.raises(RecipeError, match="padding_free is not supported for image batches"):
        preflight(resolve("toy-multimodal", ["--padding_free=true"]), dry_run=True)


# --- the reference log-prob cache for image pairs (precompute_ref_log_probs) ---------------------
def tokenised(rows, processor):
    """The rows with their features, as training.run.tokenize_dataset keeps them."""
    import datasets

    from alignment_unidpo.training.multimodal import tokenize_image_row

    return datasets.Dataset.from_list([{**r, **tokenize_image_row(r, processor, 200, 150)} for r in rows])


def image_cache(folder, processor):
    from alignment_unidpo.training.ref_cache import ReferenceLogpsCache, image_processor_settings

    return ReferenceLogpsCache(folder, {"reference": "tiny-qwen2-vl",
                                        "image_processor": image_processor_settings(processor.image_processor)})


def reference_pass(tmp_path, vl, ds, cache):
    """``ds`` as a trainer with ``precompute_ref_log_probs`` trains on it: its reference columns read
    from ``cache``, or computed (in batches of 2, through the image collator) and written there."""
    import copy

    from alignment_unidpo.configs import UniDPOConfig
    from alignment_unidpo.training.multimodal import ImagePreferenceCollator
    from alignment_unidpo.training.reference import ReferencePlan
    from alignment_unidpo.training.trainer import UniDPOTrainer

    processor, model = vl
    args = UniDPOConfig(output_dir=str(tmp_path / "o"), loss_type="dpo", precompute_ref_log_probs=True,
                        precompute_ref_batch_size=2, use_cpu=True, report_to="none", disable_tqdm=True)
    plan = ReferencePlan.decide(args, ds, None, cache)
    trainer = UniDPOTrainer(model=copy.deepcopy(model), ref_model=model, args=args, reference_plan=plan,
                            data_collator=ImagePreferenceCollator(pad_token_id=processor.pad_token_id,
                                                                  processor=processor),
                            train_dataset=plan.train, processing_class=processor.tokenizer)
    return trainer.train_dataset


def live_reference(vl, ds):
    """Each pair's chosen and rejected log-prob sums from its own forward of the reference."""
    from alignment_unidpo.training.multimodal import ImagePreferenceCollator
    from alignment_unidpo.training.trainer import model_sequence_logps

    processor, model = vl
    collate = ImagePreferenceCollator(pad_token_id=processor.pad_token_id, processor=processor)
    with torch.no_grad():
        sums = torch.stack([model_sequence_logps(model, collate([f])).sum for f in ds]).double()
    return sums[:, 0], sums[:, 1]


def two_image_pairs(folder):
    """:func:`image_pairs` and a pair with two of their images (the authors' data has such pairs)."""
    rows = image_pairs(folder)
    return rows + [{**rows[0], "messages": [{"role": "user", "content": "<image> and <image>: the same colour?"}],
                    "chosen": "No.", "images": [rows[0]["images"][0], rows[2]["images"][0]]}]


def cached_logps(ds):
    return torch.tensor(ds["ref_chosen_logps"], dtype=torch.float64), torch.tensor(ds["ref_rejected_logps"],
                                                                                  dtype=torch.float64)


# The cached values come from padded batches of 2, the live ones from one pair at a time: in float32
# they differ by reduction order only, at most about 2e-7 relative (trainer.REF_GAP_TOLERANCE's
# measurements), so 1e-5 has 50x room; a changed image moves these sums by about 5e-3 relative.
SAME_LOGPS = dict(rtol=1e-5, atol=1e-6)


def test_cached_reference_logps_of_image_pairs_equal_the_live_reference(tmp_path, vl, count_reference_work):
    processor, _ = vl
    ds = tokenised(two_image_pairs(tmp_path / "img"), processor)
    cache = image_cache(tmp_path / "cache", processor)
    computed = reference_pass(tmp_path, vl, ds, cache)
    assert count_reference_work["computed"] == 1 and cache.path(ds).exists()
    for got, want in zip(cached_logps(computed), live_reference(vl, ds)):
        torch.testing.assert_close(got, want, **SAME_LOGPS)
    read = reference_pass(tmp_path, vl, ds, cache)  # a second run: read back, nothing computed
    assert count_reference_work["computed"] == 1
    assert read["ref_chosen_logps"] == computed["ref_chosen_logps"]
    assert read["ref_rejected_logps"] == computed["ref_rejected_logps"]


def test_the_image_cache_key_follows_image_bytes_and_processor_settings_not_paths(tmp_path, vl, count_reference_work):
    import copy
    import shutil

    from PIL import Image

    from alignment_unidpo.training.ref_cache import ReferenceLogpsCache, image_processor_settings

    processor, _ = vl
    rows = two_image_pairs(tmp_path / "a")
    ds = tokenised(rows, processor)
    cache = image_cache(tmp_path / "cache", processor)
    first = reference_pass(tmp_path, vl, ds, cache)
    # the same images under another folder (another image_root), in any row order: served
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = tokenised([{**r, "images": [p.replace(str(tmp_path / "a"), str(tmp_path / "b")) for p in r["images"]]}
                       for r in rows], processor)
    assert moved[0]["images"][0].startswith(str(tmp_path / "b")) and cache.path(moved) == cache.path(ds)
    assert reference_pass(tmp_path, vl, moved, cache)["ref_chosen_logps"] == first["ref_chosen_logps"]
    order = [3, 1, 0, 2]
    got = cache.load(moved.select(order))  # per example: another order has no whole-dataset file of its own
    assert got is not None and not cache.path(moved.select(order)).exists()
    assert got["ref_rejected_logps"].tolist() == [first["ref_rejected_logps"][i] for i in order]
    assert count_reference_work["computed"] == 1
    # image 1 rewritten in place, same size, other colour: the same token ids, another key; recomputed
    before = cache.path(ds)
    Image.new("RGB", (28, 56), (200, 10, 30)).save(rows[1]["images"][0])
    rewritten = tokenised(rows, processor)
    for column in ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids", "image_grid_thw"):
        assert rewritten[column] == ds[column], column
    assert cache.path(rewritten) != before and cache.load(rewritten) is None
    assert cache.path(ds) == cache.path(rewritten)  # the key reads the files as they are now, never remembered
    assert cache.load(rewritten.select([0, 2, 3])) is not None  # the untouched pairs are still served
    again = reference_pass(tmp_path, vl, rewritten, cache)
    assert count_reference_work["computed"] == 2
    got, want = cached_logps(again), live_reference(vl, rewritten)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **SAME_LOGPS)
    old = cached_logps(first)
    assert (got[0][1] - old[0][1]).abs() > 1e-3 * old[0][1].abs()  # the new image's values, not the stale ones
    # another image processor setting (normalisation, resizing bounds, resampling) is another key
    for name, value in (("image_mean", [0.5, 0.5, 0.5]), ("size", {"shortest_edge": 784, "longest_edge": 1568}),
                        ("resample", 2)):
        changed = copy.deepcopy(processor.image_processor)
        setattr(changed, name, value)
        other = ReferenceLogpsCache(cache.directory, {**cache.key_fields,
                                                      "image_processor": image_processor_settings(changed)})
        assert other.load(ds) is None and other.rows_dir() != cache.rows_dir(), name
    with pytest.raises(ValueError, match="image processor's settings"):  # image pairs never keyed without them
        ReferenceLogpsCache(cache.directory, {"reference": "tiny-qwen2-vl"}).load(ds)


def test_the_toy_multimodal_recipe_trains_the_same_with_the_reference_cache(tmp_path, count_reference_work):
    """Live reference, then the cache computed, then read with no reference model loaded: the same
    losses and metrics at every step (SGD: equal gradients give equal steps)."""
    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.run import train

    names = make_images(tmp_path / "root", n=4)
    data = write_json(tmp_path / "pairs.json", [authors_row(names[i % 4], i) for i in range(12)])
    common = {"dataset_mixture": [{"path": data, "image_root": str(tmp_path / "root")}], "test_split_size": 4,
              "max_steps": 2, "eval_strategy": "no", "per_device_train_batch_size": 4, "global_batch_size": 4,
              "per_device_eval_batch_size": 4, "optim": "sgd", "learning_rate": 1.0, "lr_scheduler_type": "constant",
              "use_cpu": True, "ref_logps_cache_dir": str(tmp_path / "cache")}

    def run(name, **overrides):
        recipe = resolve("toy-multimodal", {**common, "output_dir": str(tmp_path / name), **overrides},
                         num_processes=1)
        metrics = train(recipe)
        history = json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]
        return metrics, [h for h in history if "loss" in h]

    live_metrics, live_steps = run("live")
    assert count_reference_work == {"computed": 0, "loaded_reference": [True]}
    cached = [run("cached", precompute_ref_log_probs=True), run("again", precompute_ref_log_probs=True)]
    assert count_reference_work == {"computed": 2, "loaded_reference": [True, True, False]}  # train, eval; then none
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    for metrics, steps in cached:
        assert len(steps) == len(live_steps) == 2
        for step, (got, want) in enumerate(zip(steps, live_steps)):
            for key in ("loss", "rewards/margins", "rewards/chosen", "logps/chosen", "w_perf", "grad_norm"):
                assert key in want and key in got, key
                # abs: at step 0 the policy is the reference, every reward 0 up to rounding
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (step, key)
        for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/chosen", "eval_logps/rejected"):
            assert metrics[key] == pytest.approx(live_metrics[key], rel=1e-4, abs=1e-6), key


def test_toy_pairs_on_disk_are_the_generators(tmp_path):
    from alignment_unidpo.training.toy import write_toy_image_pairs
    from helpers import REPO_ROOT

    rows = write_toy_image_pairs(tmp_path)
    assert (tmp_path / "pairs.jsonl").read_text() == (REPO_ROOT / "data/toy_multimodal/pairs.jsonl").read_text()
    assert len(rows) == 64 and sum(len(r["images"]) == 2 for r in rows) == 16


# --- embedded image bytes: the content-addressed image store ------------------------------------
@pytest.fixture
def image_store(tmp_path, monkeypatch):
    """The image store, in a folder of its own for the test (never the repository's .cache)."""
    from alignment_unidpo.training.data import IMAGE_STORE_ENV

    store = tmp_path / "store"
    monkeypatch.setenv(IMAGE_STORE_ENV, str(store))
    return store


def embedded(path):
    """An ``images`` entry holding the file's bytes as base64 (its name only as ``path``)."""
    import base64
    from pathlib import Path

    return {"bytes": base64.b64encode(Path(path).read_bytes()).decode(), "path": Path(path).name}


def record_pairs(folder):
    """:func:`two_image_pairs` as records (prompt, answers, scores, image paths), the last one with
    image 0 twice: four pairs, three distinct images."""
    rows = two_image_pairs(folder)
    rows[-1] = {**rows[-1], "images": [rows[0]["images"][0], rows[0]["images"][0]]}
    return [{"prompt": r["messages"][0]["content"], "chosen": r["chosen"], "rejected": r["rejected"],
             "score_chosen": r["score_chosen"], "score_rejected": r["score_rejected"], "images": r["images"]}
            for r in rows]


def write_jsonl_records(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def assert_same_image_data(got, want, processor):
    """Two loaded image datasets that train the same: row for row the same token ids, image grids and
    pixel values, and the same reference cache file (keyed by image bytes)."""
    got, want = tokenised(list(got), processor), tokenised(list(want), processor)
    for column in ("row", "prompt_input_ids", "chosen_input_ids", "rejected_input_ids", "image_grid_thw"):
        assert got[column] == want[column], column
    for g, w in zip(got["images"], want["images"]):
        for key, value in processor.image_inputs(g).items():
            assert torch.equal(value, processor.image_inputs(w)[key]), key
    cache = image_cache("unused", processor)
    assert cache.path(got) == cache.path(want)


def store_state(store):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in store.iterdir()}


def test_embedded_images_train_like_their_files_and_are_stored_once(tmp_path, vl, image_store):
    import hashlib

    processor, _ = vl
    rows = record_pairs(tmp_path / "img")
    paths = load(write_jsonl_records(tmp_path / "paths.jsonl", rows), None)
    assert not image_store.exists()  # paths only: no store
    inline = write_jsonl_records(tmp_path / "inline.jsonl",
                                 [{**r, "images": [embedded(p) for p in r["images"]]} for r in rows])
    got = load(inline, None)
    assert_same_image_data(got, paths, processor)
    distinct = {Path(p).read_bytes() for r in rows for p in r["images"]}
    assert len(distinct) == 3 and {p.name for p in image_store.iterdir()} == {
        f"{hashlib.sha256(data).hexdigest()}.png" for data in distinct}
    assert all(p.startswith(str(image_store)) for r in got["images"] for p in r)
    before = store_state(image_store)
    assert_same_image_data(load(inline, None), paths, processor)  # a second load: the files reused, not rewritten
    assert store_state(image_store) == before


def test_an_image_feature_of_a_datasets_parquet_file_is_read_as_bytes(tmp_path, vl, image_store):
    import datasets

    processor, _ = vl
    rows = record_pairs(tmp_path / "img")
    paths = load(write_jsonl_records(tmp_path / "paths.jsonl", rows), None)
    features = datasets.Features({"prompt": datasets.Value("string"), "chosen": datasets.Value("string"),
                                  "rejected": datasets.Value("string"), "score_chosen": datasets.Value("float64"),
                                  "score_rejected": datasets.Value("float64"),
                                  "images": datasets.List(datasets.Image())})
    table = datasets.Dataset.from_list(
        [{**r, "images": [{"bytes": Path(p).read_bytes(), "path": None} for p in r["images"]]} for r in rows],
        features=features)
    assert type(table[0]["images"][0]).__name__ == "PngImageFile"  # decoded by default
    table.to_parquet(tmp_path / "pairs.parquet")
    assert_same_image_data(load(str(tmp_path / "pairs.parquet"), None), paths, processor)
    assert len(list(image_store.iterdir())) == 3


def test_text_data_opens_no_image_store(tmp_path, image_store):
    from helpers import good_row

    path = write_json(tmp_path / "text.json", [good_row(i) for i in range(3)])
    assert "images" not in load_mixture([{"path": path}], seed=0).column_names
    assert not image_store.exists()


@pytest.mark.parametrize("case, message", [
    ("not base64", "'bytes' is not valid base64"),
    ("not an image", "embedded bytes are not a readable image"),
    ("bytes not text", "'bytes' must be base64 text, got int"),
    ("neither path nor bytes", "expected an image file path or {\"bytes\": <base64>}, got 42"),
    ("no bytes, no path", "expected an image file path or {\"bytes\": <base64>}, got {'path': None}"),
])
def test_bad_embedded_images_fail_naming_file_row_and_field(tmp_path, image_store, case, message):
    import base64

    images = make_images(tmp_path)
    entry = {"not base64": {"bytes": "@@not base64@@"},
             "not an image": {"bytes": base64.b64encode(b"not a png at all").decode()},
             "bytes not text": {"bytes": 7},
             "neither path nor bytes": 42,
             "no bytes, no path": {"path": None}}[case]
    path = write_jsonl_records(tmp_path / "pairs.jsonl", [
        authors_row(images[0]), authors_row(images[0], instruction="<image> <image>", images=[images[1], entry])])
    with pytest.raises(DataValidationError) as err:
        load(path, tmp_path)
    lines = str(err.value).splitlines()
    assert lines[0] == "1 bad row(s):" and len(lines) == 2, lines
    assert f"{path} (train), row 2, field 'images'[1]: " in lines[1] and message in lines[1], lines
    assert not image_store.exists()


def test_embedded_images_count_against_the_placeholders_and_the_launcher_checks_them(tmp_path, image_store):
    import base64

    from alignment_unidpo.checks import preflight
    from alignment_unidpo.resolve import resolve

    images = make_images(tmp_path)
    good = embedded(tmp_path / images[0])
    path = write_jsonl_records(tmp_path / "pairs.jsonl", [
        authors_row(good), authors_row(good, images=[good, good]),
        authors_row(images[1], images=[{"bytes": base64.b64encode(b"GIF89a nonsense").decode()}])])
    recipe = resolve("qwen2-vl-2b", {"dataset_mixture": [{"path": path, "image_root": str(tmp_path)}],
                                     "report_to": "none", "output_dir": str(tmp_path / "out")})
    with pytest.raises(DataValidationError) as err:
        preflight(recipe, dry_run=True)
    assert str(err.value).splitlines()[1:] == [
        f"  {path} (train), row 2, field 'images': 2 image(s) but 1 '<image>' placeholder(s) in the prompt",
        f"  {path} (train), row 3, field 'images'[0]: embedded bytes are not a readable image: "
        "cannot identify image file"]
    assert [p.suffix for p in image_store.iterdir()] == [".png"]  # row 1's image, checked and stored


@pytest.mark.slow  # two-process launch
@pytest.mark.parametrize("backend", ["ddp", "zero3"])
def test_two_processes_train_the_toy_multimodal_recipe_like_one(tmp_path, backend):
    """Same global batch (8 pairs) on one process and on two ranks of 4: the same weights after two
    steps. Every rank has images at every step (mixed text/image data is refused)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from alignment_unidpo.resolve import resolve
    from alignment_unidpo.training.run import train
    from helpers import REPO_ROOT, two_rank_accelerate_config

    common = {"max_steps": 2, "eval_strategy": "no", "lr_scheduler_type": "constant"}
    train(resolve("toy-multimodal", {**common, "output_dir": str(tmp_path / "one"), "use_cpu": True},
                  num_processes=1))
    config = two_rank_accelerate_config(backend, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO_ROOT / "src")}
    args = [f"--{k}={v}" for k, v in common.items()] + [f"--output_dir={tmp_path / 'two'}",
                                                        "--per_device_train_batch_size=4", "--use_cpu=true"]
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
         str(REPO_ROOT / "scripts" / "run_unidpo.py"), "toy-multimodal", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    one, two = (load_file(tmp_path / name / "model.safetensors") for name in ("one", "two"))
    assert set(one) == set(two)
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
