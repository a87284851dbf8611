"""The loss table (configs.LOSS_TYPES): it covers every loss type the config admits, each entry
fits its function, and everything that depends on the loss type reads it there: a loss type
registered here (a fake one) is called by the trainer, listed by the dry run and --help,
decides whether a reference is loaded, what the launcher checks, and the world's reward."""

import inspect
import math

import datasets
import numpy as np
import pytest
import torch

from helpers import REPO_ROOT

from alignment_unidpo import checks, usage
from alignment_unidpo.base.errors import RecipeError
from alignment_unidpo.configs import (LOSS_TYPES, REFERENCE_KEYS, USED_BY_LOSS, LossType, UniDPOConfig,
                                      ignored_by_loss_type, policy_margin, reference_ratio_margin)
from alignment_unidpo.resolve import known_keys, resolve
from alignment_unidpo.training import losses
from alignment_unidpo.training import run
from alignment_unidpo.training.logprobs import SequenceLogps
from alignment_unidpo.training.models import load_policy_and_reference, load_tokenizer
from alignment_unidpo.training.reference import ReferencePlan, precomputes_reference
from alignment_unidpo.training.tokenization import REFERENCE_COLUMNS
from alignment_unidpo.training.trainer import UniDPOTrainer
from alignment_unidpo.world.evaluate import RewardSpec

SMALL_DATA = [{"path": "data/toy_preferences_text.jsonl", "fraction": 0.1},
              {"path": "data/toy_preferences_chat.jsonl", "fraction": 0.1}]


def positional_inputs(loss: LossType) -> int:
    return 2 + 2 * loss.needs_reference + 2 * loss.needs_scores


# --- the table itself ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["uni_dpo", "dpo", "simpo", "ipo", "orpo", "sft", "UNI_DPO", ""])
def test_the_table_is_exactly_the_loss_types_the_config_admits(name):
    if name in LOSS_TYPES:
        assert resolve("default", {"loss_type": name}).training.loss_type == name
    else:
        with pytest.raises(RecipeError, match="loss_type must be one of"):
            resolve("default", {"loss_type": name})


def test_the_loss_types_are_uni_dpo_dpo_and_simpo_and_help_names_each():
    assert list(LOSS_TYPES) == ["uni_dpo", "dpo", "simpo"]
    help_text = UniDPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    for name, loss in LOSS_TYPES.items():
        assert loss.name == name and f"{name}: {loss.title}" in help_text


@pytest.mark.parametrize("name", list(LOSS_TYPES))
def test_each_entry_fits_its_function_and_names_real_keys(name):
    loss = LOSS_TYPES[name]
    function = losses.function_of(loss)
    config = resolve("default", {"loss_type": name}).training
    kwargs = loss.kwargs_from(config, nll_ref_gap_tolerance=0.0)
    # every input and argument has its parameter, and every parameter without a default is given
    inspect.signature(function).bind(*range(positional_inputs(loss)), **kwargs)
    assert set(loss.reads) <= known_keys()
    if isinstance(loss.averaged, str):
        assert isinstance(getattr(config, loss.averaged), bool)
    assert set(REFERENCE_KEYS) <= set(loss.reads) or not loss.needs_reference
    # adding a loss type is one entry, one function and its test: the function is tested
    assert loss.function in (REPO_ROOT / "tests" / "test_losses.py").read_text()


@pytest.mark.parametrize("name", list(LOSS_TYPES))
def test_the_implicit_reward_is_the_one_the_loss_logs(name):
    """The table's reward margin (world evaluation, Fig. 4) equals the function's own ``rewards/margins``."""
    loss = LOSS_TYPES[name]
    gen = torch.Generator().manual_seed(0)
    pi_w, pi_l, ref_w, ref_l = (-torch.rand(6, generator=gen, dtype=torch.float64) * 5 for _ in range(4))
    scores = [torch.rand(6, generator=gen, dtype=torch.float64) * 10 for _ in range(2)]
    inputs = [pi_w, pi_l] + [ref_w, ref_l] * loss.needs_reference + scores * loss.needs_scores
    config = resolve("default", {"loss_type": name, "beta": 1.7}).training
    _, metrics = losses.function_of(loss)(*inputs, **loss.kwargs_from(config, nll_ref_gap_tolerance=0.0))
    margin = loss.reward_margin(pi_w, pi_l, ref_w, ref_l, 1.7)
    torch.testing.assert_close(metrics["rewards/margins"].double(), margin.double(), rtol=1e-5, atol=1e-5)
    assert loss.reward_margin is (reference_ratio_margin if loss.needs_reference else policy_margin)


def test_which_keys_each_loss_type_reads():
    uni_dpo = set(LOSS_TYPES["uni_dpo"].reads)
    assert {"beta", "qual_eta", "tau_good", "length_normalize", "nll_ref_gap_tolerance", *REFERENCE_KEYS} <= uni_dpo
    assert set(LOSS_TYPES["dpo"].reads) == {"beta", "label_smoothing", "dpo_average_logps", *REFERENCE_KEYS}
    assert set(LOSS_TYPES["simpo"].reads) == {"beta", "simpo_gamma_beta_ratio", "label_smoothing"}
    assert LOSS_TYPES["simpo"].kwargs_from(resolve("default", {"loss_type": "simpo"}).training) == {
        "beta": 2.0, "gamma_beta_ratio": 0.5, "label_smoothing": 0.0}
    for name in LOSS_TYPES:
        assert set(ignored_by_loss_type(name)) == set(USED_BY_LOSS) - set(LOSS_TYPES[name].reads)


# --- a loss type registered here: every consumer follows the table ---------------------------

class FakeLoss:
    """A loss function that records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, *inputs, **kwargs):
        self.calls.append((inputs, kwargs))
        return (inputs[0] - inputs[1]).float(), {}


FAKES = {
    # no reference, no scores, summed log-probs; reads simpo's margin under another argument name
    "plain": LossType(name="fake", title="a test loss", function="fake_loss",
                      arguments={"beta": "scale", "simpo_gamma_beta_ratio": "offset"}, needs_reference=False,
                      needs_scores=False, averaged=False, reward_margin=policy_margin),
    # a reference, the scores, uni_dpo's length_normalize switch and the trainer's resolved tolerance
    "referenced": LossType(name="fake", title="a test loss", function="fake_loss",
                           arguments={"beta": "scale", "nll_ref_gap_tolerance": "tolerance"}, needs_reference=True,
                           needs_scores=True, averaged="length_normalize", reward_margin=reference_ratio_margin),
}


@pytest.fixture(params=list(FAKES))
def fake(request, monkeypatch):
    loss = FAKES[request.param]
    function = FakeLoss()
    monkeypatch.setitem(LOSS_TYPES, "fake", loss)
    monkeypatch.setattr(losses, "fake_loss", function, raising=False)
    return loss, function


def test_a_registered_loss_type_is_admitted_and_its_ignored_keys_are_listed(fake):
    loss, _ = fake
    out = resolve("default", {"loss_type": "fake"}).to_json_dict()
    ignored = out["ignored_by_loss_type"]
    assert "label_smoothing" in ignored and "qual_eta" in ignored and "beta" not in ignored
    assert set(REFERENCE_KEYS).isdisjoint(ignored) == loss.needs_reference
    assert ("simpo_gamma_beta_ratio" in ignored) == ("simpo_gamma_beta_ratio" not in loss.arguments)
    if "simpo_gamma_beta_ratio" in loss.arguments:
        assert USED_BY_LOSS["simpo_gamma_beta_ratio"] == ("simpo", "fake")
        assert "(simpo, fake only)" in "\n".join(usage.key_lines(UniDPOConfig))
    with pytest.raises(RecipeError, match="label_smoothing is defined for dpo and simpo only; a test loss has none"):
        resolve("default", {"loss_type": "fake", "label_smoothing": 0.1})


def test_a_registered_loss_type_decides_the_reference_and_the_launcher_checks(fake, tmp_path):
    loss, _ = fake
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    recipe = resolve("default", {"loss_type": "fake", "precompute_ref_log_probs": True,
                                 "ref_logps_cache_dir": str(not_a_folder / "cache"), "output_dir": str(tmp_path / "o")})
    assert precomputes_reference(recipe.training) == loss.needs_reference
    problems = checks.output_problems(recipe)
    assert any(p.startswith("ref_logps_cache_dir") for p in problems) == loss.needs_reference
    plan = ReferencePlan.decide(recipe.training, pairs(2), None)
    assert (plan.needed, plan.precompute, plan.needs_model) == (loss.needs_reference,) * 3


def test_a_registered_loss_type_decides_whether_run_loads_a_reference(fake, tmp_path, monkeypatch):
    loss, _ = fake
    asked = []

    class Stop(Exception):
        pass

    def record(*args, need_reference, **kwargs):
        asked.append(need_reference)
        raise Stop

    monkeypatch.setattr(run, "load_policy_and_reference", record)
    recipe = resolve("default", {"loss_type": "fake", "dataset_mixture": SMALL_DATA, "test_split_size": 0,
                                 "eval_strategy": "no", "output_dir": str(tmp_path / "out"), "use_cpu": True},
                     num_processes=1)
    with pytest.raises(Stop):
        run.train(recipe)
    assert asked == [loss.needs_reference]


def test_the_trainer_calls_a_registered_loss_type_with_what_its_entry_says(fake, tmp_path):
    loss, function = fake
    recipe = resolve("default", {"loss_type": "fake", "dataset_mixture": SMALL_DATA, "test_split_size": 0,
                                 "eval_strategy": "no", "save_strategy": "no", "output_dir": str(tmp_path / "out"),
                                 "disable_tqdm": True, "use_cpu": True, "beta": 1.5}, num_processes=1)
    tokenizer = load_tokenizer(recipe.model)
    recipe, train_ds, eval_ds = run.prepare_data(recipe, tokenizer)
    policy, reference = load_policy_and_reference(recipe.model, tokenizer, gradient_checkpointing=False,
                                                  need_reference=loss.needs_reference)
    assert (reference is not None) == loss.needs_reference
    trainer = UniDPOTrainer(model=policy, ref_model=reference, args=recipe.training, train_dataset=train_ds,
                            eval_dataset=eval_ds, processing_class=tokenizer)
    assert trainer.reference_plan.needed == loss.needs_reference
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    with torch.no_grad():
        got = trainer.preference_loss(trainer.model, batch, "train")
        policy_logps = trainer.concatenated_logps(trainer.model, batch)
    (inputs, kwargs), = function.calls
    assert len(inputs) == positional_inputs(loss)
    reduced = policy_logps.mean if loss.averages(recipe.training) else policy_logps.sum
    torch.testing.assert_close(inputs[0], reduced[:3])
    torch.testing.assert_close(inputs[1], reduced[3:])
    if loss.needs_scores:
        torch.testing.assert_close(inputs[-2], batch["score_chosen"])
    other = ("offset", recipe.training.simpo_gamma_beta_ratio) if "simpo_gamma_beta_ratio" in loss.arguments else \
        ("tolerance", trainer.nll_ref_gap_tolerance)  # the trainer's, tied to the precision (not the recipe's null)
    assert kwargs == {"scale": 1.5, other[0]: other[1]}
    assert got.item() == pytest.approx((reduced[:3] - reduced[3:]).mean().item(), rel=1e-6)


def test_the_world_reward_is_the_registered_loss_types_reward(fake):
    loss, _ = fake
    policy = SequenceLogps(sum=torch.tensor([-4.0, -9.0]), mean=torch.tensor([-1.0, -1.5]),
                           num_tokens=torch.tensor([4, 6]), mean_logits=torch.zeros(2))
    reference = SequenceLogps(sum=torch.tensor([-5.0, -7.0]), mean=torch.tensor([-1.25, -1.0]),
                              num_tokens=torch.tensor([4, 6]), mean_logits=torch.zeros(2))
    for length_normalize in (True, False):
        spec = RewardSpec("fake", beta=2.0, length_normalize=length_normalize)
        field = "mean" if loss.averages(spec) else "sum"
        pol, ref = getattr(policy, field), getattr(reference, field)
        expected = loss.reward_margin(pol[:1], pol[1:], ref[:1], ref[1:], 2.0)
        torch.testing.assert_close(spec.margins(policy, reference, 1), expected)


# --- the reference plan ---------------------------------------------------------------------

class DictCache:
    """A stand-in for ReferenceLogpsCache holding the log-probs of some datasets (by length)."""

    def __init__(self, held: dict[int, dict[str, np.ndarray]]):
        self.held, self.saved = held, []

    def load(self, ds):
        return self.held.get(len(ds))

    def save(self, ds, values):
        self.saved.append(len(ds))


def pairs(n):
    return datasets.Dataset.from_dict({"score_chosen": [1.0] * n})


def values(n):
    return {column: np.zeros(n, np.float32) for column in REFERENCE_COLUMNS}


@pytest.mark.parametrize("held, to_compute, needs_model", [
    ({}, ["train", "eval"], True),
    ({4: values(4)}, ["eval"], True),
    ({4: values(4), 2: values(2)}, [], False),
])
def test_the_reference_plan_attaches_what_the_cache_holds(held, to_compute, needs_model):
    args = resolve("default", {"precompute_ref_log_probs": True}).training
    plan = ReferencePlan.decide(args, pairs(4), pairs(2), DictCache(held))
    assert (plan.precompute, plan.to_compute, plan.needs_model) == (True, to_compute, needs_model)
    assert all(set(REFERENCE_COLUMNS) <= set(plan.splits[s].column_names) for s in plan.splits if s not in to_compute)
    # a cache known only later (a hub reference pinned once it loads) is looked up then
    later = ReferencePlan.decide(args, pairs(4), pairs(2)).with_cache(DictCache(held))
    assert (later.to_compute, later.needs_model) == (to_compute, needs_model)


def test_without_precompute_the_plan_looks_up_nothing_and_needs_the_model():
    args = resolve("default").training
    plan = ReferencePlan.decide(args, pairs(4), None, DictCache({4: values(4)}))
    assert (plan.needed, plan.precompute, plan.cache, plan.to_compute, plan.needs_model) == (True, False, None, [], True)
    assert REFERENCE_COLUMNS[0] not in plan.train.column_names
    simpo = ReferencePlan.decide(resolve("default", {"loss_type": "simpo", "precompute_ref_log_probs": True}).training,
                                 pairs(4), None, DictCache({4: values(4)}))
    assert (simpo.needed, simpo.precompute, simpo.needs_model) == (False, False, False)


def test_the_trainer_refuses_datasets_that_are_not_its_plans(tmp_path):
    recipe = resolve("default", {"dataset_mixture": SMALL_DATA, "test_split_size": 0, "eval_strategy": "no",
                                 "output_dir": str(tmp_path / "out"), "use_cpu": True}, num_processes=1)
    tokenizer = load_tokenizer(recipe.model)
    train_ds, _ = run.build_datasets(recipe, tokenizer)
    policy, reference = load_policy_and_reference(recipe.model, tokenizer, gradient_checkpointing=False,
                                                  need_reference=True)
    plan = ReferencePlan.decide(recipe.training, train_ds, None)
    with pytest.raises(ValueError, match="must be the reference plan's"):
        UniDPOTrainer(model=policy, ref_model=reference, args=recipe.training, train_dataset=train_ds.select(range(4)),
                      processing_class=tokenizer, reference_plan=plan)
    # a config whose tau_good rule never met the training pairs is refused, not trained with nan
    unresolved = resolve("default", {"tau_good": "median", "eval_strategy": "no", "output_dir": str(tmp_path / "out"),
                                     "use_cpu": True},
                         num_processes=1).training
    assert math.isnan(unresolved.tau_good)
    with pytest.raises(ValueError, match="tau_good=nan"):
        UniDPOTrainer(model=policy, ref_model=reference, args=unresolved, train_dataset=train_ds,
                      processing_class=tokenizer)

