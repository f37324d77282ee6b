"""The `mlp` learner: a small torch MLP on frozen embeddings + feature groups, in the one CV loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from amzkit.core.schema import get_schema
from amzkit.ml.base import RunInputs, floor_prediction
from amzkit.ml.cv import cross_validate
from amzkit.ml.folds import make_folds
from amzkit.ml.learners import make_learner
from amzkit.ml.mlp import MlpLearner, TabularScaler, _predict_log
from amzkit.stages.train import train_run
from amzkit.testing import counting_fits, golden_copies, planted_price_world, pretend_gpus, write_embedding_run

FAST = {"features": ["text_stats", "quantity"], "embeddings": ["planted"], "num_threads": 1, "epochs": 30,
        "device": "cpu"}


GOLDEN = "Item Name: golden golden item\nValue: 1.0\nUnit: Count"  # one product no other row resembles


def planted_inputs(work, n_train=400, n_test=80, seed=0, price=None, golden_rows=()) -> RunInputs:
    """RunInputs over planted_price_world with its embedding written as 01 run 'planted' (GOLDEN copies at
    `golden_rows`: same text, the same embedding far from every other row's)."""
    world = planted_price_world(n_train, n_test, seed)
    data = world["data"]
    if price is not None:
        data["train"]["price"] = price
    golden_rows = list(golden_rows)
    data["train"].loc[golden_rows, "catalog_content"] = GOLDEN
    world["embedding"][golden_rows] = 5.0
    write_embedding_run(work, "planted", {
        "train": (world["embedding"][:n_train], data["train"]["sample_id"].to_numpy()),
        "test": (world["embedding"][n_train:], data["test"]["sample_id"].to_numpy())})
    return RunInputs(data, get_schema("amazon2025"), work, seed=0)


def test_mlp_learns_a_planted_embedding_signal(tmp_path):
    inputs = planted_inputs(tmp_path)
    folds = make_folds(inputs.y, 5, 0, "kfold")
    result = cross_validate(make_learner("mlp", **FAST).prepare(inputs), folds, progress=False)
    assert np.mean(result["fold_smape"]) < 0.3 * np.mean(result["fold_constant_smape"]), result["fold_smape"]
    assert result["test"].shape == (80,) and np.isfinite(result["test"]).all() and (result["test"] > 0).all()


class LeakyMlp(MlpLearner):
    """Centres its head on the mean log price of EVERY train row, validation rows included: a leak."""

    def fit(self, rows, y, weight=None):
        super().fit(rows, y, weight)
        for net in self.model_:
            net.centre.fill_(float(np.log1p(self.inputs_.y).mean()))
        return self


def fold_zero_oof(work, learner_cls, price, golden_rows) -> np.ndarray:
    inputs = planted_inputs(work, n_train=200, n_test=20, price=price, golden_rows=golden_rows)
    folds = make_folds(np.ones(200), 4, 0, "kfold")  # fixed folds: they must not move with the labels
    learner = learner_cls(**{**FAST, "epochs": 5}).prepare(inputs)
    return cross_validate(learner, folds, progress=False)["oof"][folds == 0]


def test_mlp_never_reads_the_label_of_a_row_it_scores(tmp_path):
    """A 'golden' product copied twice inside fold 0 (as group folds keep copies together) with a price no other
    row has: its OOF predictions do not come near that price, and fold 0's OOF predictions are exactly those of
    a run where the copies carry an ordinary price."""
    price = planted_price_world(200, 20)["data"]["train"]["price"].to_numpy()
    ordinary, distinctive, copies = golden_copies(price)
    before = fold_zero_oof(tmp_path / "a", MlpLearner, ordinary, copies)
    after = fold_zero_oof(tmp_path / "b", MlpLearner, distinctive, copies)
    np.testing.assert_array_equal(before, after)
    # the copies are fold 0's first rows: alike, and nowhere near 5000
    assert after[0] == pytest.approx(after[1], rel=1e-5) and after[0] < 500
    # the check catches a learner that does read them
    leaky_before = fold_zero_oof(tmp_path / "c", LeakyMlp, ordinary, copies)
    leaky_after = fold_zero_oof(tmp_path / "d", LeakyMlp, distinctive, copies)
    assert not np.allclose(leaky_before, leaky_after)


def test_a_killed_mlp_run_resumes_at_fold_3_with_the_same_oof(tmp_path):
    params = {"features": ["text_stats"], "embeddings": ["planted"], "tfidf_dim": 64, "num_threads": 1,
              "epochs": 5, "device": "cpu"}
    inputs = planted_inputs(tmp_path / "whole", n_train=200, n_test=20)
    planted_inputs(tmp_path / "killed", n_train=200, n_test=20)
    data = inputs.data
    whole = train_run(data, "amazon2025", tmp_path / "whole", "mlp", params["features"], params["embeddings"],
                      learner="mlp", learner_params={"epochs": 5, "device": "cpu"}, num_threads=1, progress=False)
    killed = counting_fits(MlpLearner, kill_at=3)(**params)  # killed inside its third fold
    with pytest.raises(KeyboardInterrupt):
        train_run(data, "amazon2025", tmp_path / "killed", "mlp", learner=killed, progress=False)
    resumed_learner = counting_fits(MlpLearner)(**params)
    resumed = train_run(data, "amazon2025", tmp_path / "killed", "mlp", learner=resumed_learner, progress=False)
    assert resumed_learner.fits == 3  # folds 3, 4 and 5 only
    oof = [pd.read_csv(work / "03_train" / "mlp" / "oof.csv")["pred"].to_numpy() for work in
           (tmp_path / "whole", tmp_path / "killed")]
    np.testing.assert_allclose(oof[0], oof[1], rtol=1e-12)
    assert resumed["cv_smape"] == pytest.approx(whole["cv_smape"], rel=1e-12)
    assert resumed["learner"] == "mlp" and resumed["embeddings"] == ["planted"]
    kept = ("steps", "best_step", "holdout_smape", "refit_steps", "fp16_skipped_batches")
    assert [{k: f[k] for k in kept} for f in resumed["fold_fits"]] == [{k: f[k] for k in kept}
                                                                       for f in whole["fold_fits"]]
    assert all(1 <= f["best_step"] <= f["steps"] and f["refit_steps"] is None and f["fp16_skipped_batches"] == 0
               for f in whole["fold_fits"])  # refit is off by default


def test_tabular_scaler_imputes_flags_logs_and_standardises_from_training_rows():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5, 2, 200), np.exp(rng.normal(5, 2, 200)), rng.normal(0, 1, 200)])
    x[:20, 2] = np.nan
    scaler = TabularScaler().fit(x)
    out = scaler.transform(x)
    assert out.shape == (200, 4)  # three columns + a missing indicator for the one with NaN
    np.testing.assert_array_equal(out[:, 3], np.r_[np.ones(20), np.zeros(180)])
    assert scaler.log_.tolist() == [False, True, False]
    np.testing.assert_allclose(out[:, :3].mean(axis=0), 0, atol=0.05)
    assert np.isfinite(out).all()
    fresh = scaler.transform(np.array([[np.nan, 1e12, np.nan]]))  # unseen NaN -> the training median; clipped
    assert np.isfinite(fresh).all() and fresh[0, 1] <= out[:, 1].max() + 1e-6
    np.testing.assert_allclose(fresh[0, 0], (np.median(x[:, 0]) - scaler.mean_[0]) / scaler.std_[0], rtol=1e-5)


def test_mlp_takes_categorical_codes_one_hot_and_refuses_bad_parameters(tmp_path):
    inputs = planted_inputs(tmp_path, n_train=120, n_test=10)
    learner = MlpLearner(**{**FAST, "features": ["brand", "quantity"], "categorical": "onehot", "epochs": 2})
    learner.prepare(inputs).fit(np.arange(120), inputs.y)
    assert learner.categorical_columns_ and np.isfinite(learner.predict(inputs.test_rows)).all()
    for bad, message in (({"loss": "mae"}, "loss='mae'"), ({"hidden": [0]}, "hidden"),
                         ({"categorical": "ordinal"}, "categorical"), ({"valid_fraction": 1.0}, "valid_fraction")):
        with pytest.raises(ValueError, match=message):
            MlpLearner(**{**FAST, **bad}).prepare(inputs)


@pytest.mark.parametrize(("param", "value", "allowed"), [
    ("warmup", 100, r"\[0, 1\) \(a share of the training steps, not a step count\)"), ("warmup", -0.5, r"\[0, 1\)"),
    ("patience", -1, "an integer >= 0"), ("patience", True, "an integer"), ("patience", 2.0, "an integer"),
    ("valid_fraction", 0.6, r"\[0, 0.5\].*1/round\(1/valid_fraction\)"), ("epochs", 0, "an integer >= 1"),
    ("epochs", True, "an integer"), ("batch_size", 0, ">= 1"), ("lr", 0, "> 0"), ("weight_decay", -1e-4, ">= 0"),
    ("huber_delta", -1, "> 0"), ("dropout", 1.0, r"\[0, 1\)"), ("tfidf_dim", 0, ">= 1"), ("num_threads", -2, ">= 0"),
    ("hidden", [64, True], "list positive layer widths"),
])
def test_numeric_parameters_out_of_range_are_refused_naming_the_parameter_and_its_range(param, value, allowed):
    with pytest.raises(ValueError, match=rf"learner 'mlp': {param} must .*{allowed}"):
        MlpLearner(**{**FAST, param: value}).check_settings()


def test_the_resume_key_holds_the_device_auto_resolved_to(tmp_path, monkeypatch):
    """A run killed on a GPU must not resume on CPU with the GPU's folds (nor the other way)."""
    inputs = planted_inputs(tmp_path, n_train=60, n_test=10)
    keys = []
    for gpu in (False, True):
        pretend_gpus(monkeypatch, count=int(gpu))
        learner = MlpLearner(**{**FAST, "device": "auto"}).prepare(inputs)
        keys.append(json.dumps(learner.resume_key(), sort_keys=True, default=str))
        assert learner.describe()["params"]["device"] == "auto"
    assert keys[0] != keys[1] and json.loads(keys[1])["runtime"]["device"] == "cuda"


def test_layer_norm_weights_and_biases_get_no_weight_decay(tmp_path, monkeypatch):
    """The net's LayerNorm is `body.1`, a name without 'norm': its weight is chosen by type, not name."""
    groups = []
    adamw = torch.optim.AdamW

    def spy(params, **kwargs):
        groups.extend(params)
        return adamw(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    inputs = planted_inputs(tmp_path, n_train=60, n_test=10)
    learner = MlpLearner(**{**FAST, "epochs": 1, "weight_decay": 0.1}).prepare(inputs)
    learner.fit(np.arange(60), inputs.y)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    net, = learner.model_
    assert sorted(decay) == sorted(id(p) for p in net.parameters())
    norms = [m for m in net.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(decay[id(p)] == 0.0 for m in norms for p in m.parameters())
    decayed = {name for name, p in net.named_parameters() if decay[id(p)] > 0}
    assert decayed == {name for name, p in net.named_parameters() if name.endswith("weight") and p.dim() == 2}


def test_model_seed_bags_the_net_on_the_same_folds_and_holdout(tmp_path):
    # the run's `seed` also fixes the shared folds: model_seed is how a user makes seed bags of a net for 04
    inputs = planted_inputs(tmp_path, n_train=120, n_test=10)
    rows = np.arange(100)
    preds = [MlpLearner(**{**FAST, "epochs": 3, "model_seed": s}).prepare(inputs).fit(rows, inputs.y[rows])
             .predict(np.arange(100, 130)) for s in (0, 0, 1)]
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])
    with pytest.raises(ValueError, match="model_seed must be"):
        MlpLearner(**{**FAST, "model_seed": -1}).prepare(inputs)


@pytest.mark.parametrize("params, words", [({"refit": "false"}, "refit must be true or false"),
                                           ({"hidden": 256}, "hidden must list positive layer widths")])
def test_switches_and_widths_of_the_wrong_type_are_refused(tmp_path, params, words):
    # "false" in quotes was truthy and turned refit on; an int `hidden` was a TypeError deep in the net's build
    with pytest.raises(ValueError, match=words):
        MlpLearner(**{**FAST, **params}).prepare(planted_inputs(tmp_path, n_train=60, n_test=5))


def test_a_fold_model_loads_with_torch_loads_defaults_on_the_cpu(tmp_path):
    # torch.load's default (weights_only=True, torch >= 2.6) refused the scaler's numpy arrays; the tensors are kept
    # on the CPU so that a file a GPU worker (cuda:1) wrote loads on any machine without map_location
    inputs = planted_inputs(tmp_path, n_train=120, n_test=10)
    learner = MlpLearner(**{**FAST, "epochs": 2}).prepare(inputs).fit(np.arange(100), inputs.y[:100])
    learner.save_fold(tmp_path / "models", 0)
    state = torch.load(tmp_path / "models" / "fold0.pt")
    assert all(t.device.type == "cpu" for t in [*state["net"].values(), *state["scaler"].values()])
    for key, value in vars(learner.scaler_).items():
        np.testing.assert_array_equal(state["scaler"][key].numpy(), value)


def test_the_default_loss_is_the_smape_surrogate(tmp_path, monkeypatch):
    # on amz25_dev's 5 group folds it beat Huber by 0.6-1.1 CV SMAPE (README, 03 mlp): the fit must use it
    import amzkit.ml.mlp as mlp_module
    used = []
    real = mlp_module.weighted_loss
    monkeypatch.setattr(mlp_module, "weighted_loss", lambda name, *a, **k: used.append(name) or real(name, *a, **k))
    inputs = planted_inputs(tmp_path, n_train=120, n_test=10)
    MlpLearner(**{**FAST, "epochs": 1}).prepare(inputs).fit(np.arange(100), inputs.y[:100])
    assert used and set(used) == {"smape"}


def test_bags_average_the_log_predictions_of_nets_seeded_from_seed_plus_model_seed(tmp_path):
    """bags 3 at model_seed 2 is exactly the three single nets of model_seed 2, 3 and 4 (each early-stopped on the
    same holdout, then refit) with their log1p predictions averaged; bags 1, the default, is the single net."""
    inputs = planted_inputs(tmp_path, n_train=120, n_test=10)
    rows, scored = np.arange(100), np.arange(100, 130)

    def fitted(**params):
        return MlpLearner(**{**FAST, "epochs": 3, "refit": True, **params}).prepare(inputs).fit(rows, inputs.y[rows])

    singles = [fitted(model_seed=seed) for seed in (2, 3, 4)]
    bagged = fitted(model_seed=2, bags=3)
    assert len(bagged.model_) == 3 and all(len(single.model_) == 1 for single in singles)
    for net, single in zip(bagged.model_, singles, strict=True):
        (twin,) = single.model_
        assert net.state_dict().keys() == twin.state_dict().keys()
        assert all(torch.equal(value, twin.state_dict()[key]) for key, value in net.state_dict().items())
    logs = [_predict_log(single.model_[0], single._tensors(single.features_.matrix(scored))) for single in singles]
    expected = np.expm1(np.mean(np.array(logs, dtype=np.float64), axis=0))
    np.testing.assert_array_equal(bagged.predict(scored), floor_prediction(expected))
    assert not np.allclose(bagged.predict(scored), singles[0].predict(scored))
    # what each net chose is in the fold's report; the first net's keys stay where an unbagged fit has them
    timing_free = [{k: v for k, v in single.fit_report().items() if k != "samples_per_s"} for single in singles]
    report = bagged.fit_report()
    assert [{k: v for k, v in fit.items() if k != "samples_per_s"} for fit in report["bag_fits"]] == timing_free
    assert {k: v for k, v in report.items() if k not in ("samples_per_s", "bag_fits")} == timing_free[0]
    assert "bag_fits" not in singles[0].fit_report() and singles[0].bags == 1


@pytest.mark.parametrize("bags", [0, -1, 2.5, True, "3", 51, None])
def test_bags_must_be_a_whole_number_of_nets(bags):
    with pytest.raises(ValueError, match=r"learner 'mlp': bags must be a whole number from 1 to 50 \(models per fit\)"):
        MlpLearner(**{**FAST, "bags": bags}).check_settings()


def test_a_bagged_mlp_run_saves_every_net_and_a_rerun_with_other_bags_starts_over(tmp_path):
    inputs = planted_inputs(tmp_path, n_train=100, n_test=10)
    params = {"features": ["text_stats"], "embeddings": ["planted"], "num_threads": 1, "epochs": 2,
              "device": "cpu", "progress": False}
    models = tmp_path / "03_train" / "mlp" / "models"

    def run(bags):
        learner = counting_fits(MlpLearner)(**params, bags=bags)
        metrics = train_run(inputs.data, "amazon2025", tmp_path, "mlp", learner=learner, progress=False)
        return learner, metrics

    learner, metrics = run(2)
    assert learner.fits == 5 and metrics["bags"] == 2 and metrics["params"]["bags"] == 2
    assert all(len(fit["bag_fits"]) == 2 for fit in metrics["fold_fits"])
    assert sorted(p.name for p in models.iterdir()) == sorted(
        [f"fold{k}.pt" for k in range(5)] + [f"fold{k}_bag1.pt" for k in range(5)])
    first, second = (torch.load(models / name) for name in ("fold0.pt", "fold0_bag1.pt"))
    assert (first["bag"], second["bag"]) == (0, 1) and first["params"]["bags"] == 2
    assert not torch.equal(first["net"]["out.weight"], second["net"]["out.weight"])
    learner, metrics = run(1)  # not the kept folds of the bags-2 run, nor its bag-1 nets
    assert learner.fits == 5 and metrics["bags"] == 1
    assert sorted(p.name for p in models.iterdir()) == [f"fold{k}.pt" for k in range(5)]


SET_NUM_THREADS = torch.set_num_threads


def load(monkeypatch, cores: int, busy: float) -> list[int]:
    """Simulate a machine of `cores` allowed cores with `busy` of them kept busy by other processes; returns the
    list the counts given to torch.set_num_threads are appended to."""
    monkeypatch.setattr("amzkit.core.threads.allowed_cores", lambda: cores)
    monkeypatch.setattr("amzkit.ml.torch_fit.allowed_cores", lambda: cores, raising=False)
    monkeypatch.setattr("amzkit.core.threads.busy_elsewhere", lambda window_s=0.25: busy)
    monkeypatch.setattr("amzkit.ml.torch_fit.busy_elsewhere", lambda window_s=0.25: busy, raising=False)
    counts: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (counts.append(n), SET_NUM_THREADS(n))[1])
    return counts


def threads_run(work, **kwargs) -> dict:
    """A small CPU mlp run under the default num_threads 0."""
    inputs = planted_inputs(work, n_train=200, n_test=20)
    return train_run(inputs.data, "amazon2025", work, "mlp", ["text_stats"], ["planted"], learner="mlp",
                     learner_params={"epochs": 5, "device": "cpu", "tfidf_dim": 64}, n_folds=3, progress=False,
                     **kwargs)


def oof_of(work) -> np.ndarray:
    return pd.read_csv(work / "03_train" / "mlp" / "oof.csv")["pred"].to_numpy()


def test_a_cpu_mlp_run_gives_the_same_oof_whatever_the_load_of_the_machine(tmp_path, monkeypatch, capsys):
    """num_threads 0 is the cores the process may use, not the free ones: torch's CPU sums split by thread, so a
    count that followed the load changed the numbers from one rerun (or fold) to the next. A busy machine is
    named, with the count that runs on its free cores."""
    runs, said = {}, {}
    for busy in (0.0, 1.0):  # an idle machine, then one where another process keeps a core busy
        counts = load(monkeypatch, 2, busy)
        capsys.readouterr()
        runs[busy] = threads_run(tmp_path / str(busy)), counts
        said[busy] = capsys.readouterr().out
    assert "busy" not in said[0.0]
    assert "mlp: fits on 2 CPU threads, the cores this process may use, while other processes keep 1 of them busy" \
           in said[1.0] and "num_threads 1 runs on the free ones" in said[1.0]
    assert runs[0.0][1] == runs[1.0][1] == [2, 2, 2]  # one count for the run, the same under both loads
    assert runs[0.0][0]["cpu_threads"] == runs[1.0][0]["cpu_threads"] == 2  # recorded in metrics.json
    np.testing.assert_array_equal(oof_of(tmp_path / "0.0"), oof_of(tmp_path / "1.0"))
    assert runs[0.0][0]["cv_smape"] == runs[1.0][0]["cv_smape"]


def test_a_resumed_cpu_mlp_run_fits_on_the_thread_count_of_its_kept_folds(tmp_path, monkeypatch, capsys):
    """Resumed on a machine that would pick another count (the resume key leaves the count out so the folds are
    kept), the remaining folds run on the kept folds' count and the OOF is the uninterrupted run's; a count the
    user names wins, with a warning that the folds then mix."""
    load(monkeypatch, 2, 0.0)
    threads_run(tmp_path / "whole")
    for name, resumed_params in (("default", {}), ("named", {"num_threads": 1})):
        work = tmp_path / name
        load(monkeypatch, 2, 0.0)
        killed = counting_fits(MlpLearner, kill_at=2)(features=["text_stats"], embeddings=["planted"], epochs=5,
                                                      device="cpu", tfidf_dim=64)
        inputs = planted_inputs(work, n_train=200, n_test=20)
        with pytest.raises(KeyboardInterrupt):
            train_run(inputs.data, "amazon2025", work, "mlp", learner=killed, n_folds=3, progress=False)
        counts = load(monkeypatch, 1, 0.0)  # the resuming machine has one core
        capsys.readouterr()
        resumed = train_run(inputs.data, "amazon2025", work, "mlp", ["text_stats"], ["planted"], learner="mlp",
                            learner_params={"epochs": 5, "device": "cpu", "tfidf_dim": 64, **resumed_params},
                            n_folds=3, progress=False)
        out = capsys.readouterr().out
        assert "resuming after 1 finished folds" in out
        if name == "default":
            assert counts == [2, 2] and resumed["cpu_threads"] == 2
            assert "fits run on 2 CPU threads as the kept folds did (this machine would pick 1)" in out
            np.testing.assert_array_equal(oof_of(work), oof_of(tmp_path / "whole"))
        else:
            assert counts == [1, 1] and resumed["cpu_threads"] == 1
            assert "WARNING: the kept folds were fit on 2 CPU threads, the rest on num_threads=1" in out
