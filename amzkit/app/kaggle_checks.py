"""What `kaggle build` refuses or warns of in a plan before it writes anything: parameter sets whose kernel would
stop on Kaggle only after the kernels before it had run (hours of 01 on a GPU)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Any

from amzkit.app.kaggle_runtime import unreachable_paths
from amzkit.app.parameters import stage_parameters
from amzkit.embed.registry import LOCAL_DIR, LOCAL_DIR_TEXT, get_model_spec
from amzkit.ml.featureset import parse_embedding_spec
from amzkit.ml.learners import learner_signature
from amzkit.ml.presets import PRESETS
from amzkit.stages.train import check_learner, name_lists
from amzkit.stages.tune import check_tuning


def check_03_runs(variants: list[dict[str, Any]]) -> None:
    """A 03 kernel's work folder holds no 03 run but its own (it mounts the 01/02 kernels, never a 03 kernel), and
    04/05 keep the first of two same-named runs of the 03 kernels they mount: a pseudo_label_run or a saved preset
    (a local tuning's) would fail on Kaggle after the kernels before it had run, and two parameter sets training one
    run name would lose one run."""
    default = stage_parameters("03_train")["run_name"]
    names = [v.get("run_name") or default for v in variants]
    for name, source in ((n, v.get("pseudo_label_run")) for n, v in zip(names, variants, strict=True)):
        if source:
            raise ValueError(f"03_train run {name!r} takes pseudo-labels from run {source!r}: a 03 kernel sees the "
                             "01/02 kernels' outputs, not another 03 kernel's runs (nor any earlier run), so it would "
                             f"fail on Kaggle. Train {source!r} and then this run in one session (03_train twice in "
                             "one Kaggle notebook, or locally), or leave pseudo_label_run out of the build")
    for name, variant in zip(names, variants, strict=True):
        own = variant.get("learner_params", {}).get("preset")
        for preset in (p for p in (variant.get("preset"), own) if isinstance(p, str) and p not in PRESETS):
            if close := difflib.get_close_matches(preset, list(PRESETS), n=1, cutoff=0.75):  # a misspelt built-in
                raise ValueError(f"03_train run {name!r}: preset {preset!r} is none of the built-in presets "
                                 f"{sorted(PRESETS)}: did you mean {close[0]!r}? (a preset saved by a local tuning "
                                 "cannot be used in a 03 kernel either: its work folder holds none)")
            raise ValueError(f"03_train run {name!r} uses the saved preset {preset!r}: a 03 kernel's work folder holds "
                             "no saved preset (it mounts the 01/02 kernels' outputs only), so it would fail on Kaggle. "
                             f"Give a built-in preset {sorted(PRESETS)} with the saved one's LightGBM parameters as "
                             f"lgb_params (03_train/presets/{preset}.json, 'params'), or tune in the kernel "
                             "(tune_trials)")
    for name in (n for n in names if names.count(n) > 1):
        raise ValueError(f"several 03_train parameter sets train the run {name!r}" + (" (the default run_name)" if name
                         == default else "") + ": 04 and 05 would see only one of them. Give each parameter set its "
                         "own run_name, e.g. {run_name: ridge, learner: ridge_tfidf}")
    for name, variant in zip(names, variants, strict=True):
        check_03_learner(name, {**stage_parameters("03_train"), **variant})


def check_03_learner(name: str, params: dict[str, Any]) -> None:
    """A 03 parameter set's learner settings as 03 checks them before its first fold (train.build_learner: the
    learner_params its learner takes, the run parameters it reads; tune.check_tuning when tune_trials tunes): a
    misspelt key stops the kernel on Kaggle after 01 and 02 ran. No learner module is imported (mlp's and finetune's
    import torch) and its packages need not be installed where the build runs: XGBoost's or CatBoost's params are
    checked against the library where it is installed, and a warning says so where it is not."""
    try:
        unchecked = check_learner(params["learner"], params["learner_params"], features=params["features"],
                      embeddings=params["embeddings"], tfidf_dim=params["tfidf_dim"], group_by=params["group_by"],
                      num_threads=params["num_threads"], preset=params["preset"], lgb_params=params["lgb_params"])
        if params["tune_trials"] > 0:
            check_tuning(params["learner"], params["learner_params"], params["lgb_params"])
    except ValueError as err:
        raise ValueError(f"03_train run {name!r} would stop on Kaggle once 01 and 02 had run: {err}") from None
    for note in unchecked:
        warnings.warn(f"03_train run {name!r}: {note}", stacklevel=2)


def check_reachable_paths(kernels: Sequence[Any]) -> None:
    """Refuse the build when a kernel (a kaggle.KernelPlan) names a data_dir or work_dir that no kernel can use on
    Kaggle (kaggle_runtime.unreachable_paths): certain to fail whatever is attached, unlike a /kaggle/input folder
    that no source seems to mount (kaggle_runtime.unreachable_folders, warned of)."""
    unreachable = [f"{k.folder}: {problem}" for k in kernels
                   for problem in unreachable_paths(k.stage, {**stage_parameters(k.stage), **k.params})]
    if unreachable:
        raise ValueError("kernels that would fail on Kaggle whatever is attached: " + "; ".join(unreachable))


def runs_no_01_kernel_extracts(kernels: Sequence[Any]) -> list[str]:
    """For each 03 kernel (a kaggle.KernelPlan) of the build reading an 01 run (embeddings, or the knn learner's
    embedding) that none of the build's 01 kernels extracts, what to change: it would stop on Kaggle once 01 and 02
    had run. [] when the build has no 01 kernel (01 pushed earlier) or one embeds a local-dir: folder."""
    models = [value for k in kernels if k.stage == "01_extract"
              for value in ({**stage_parameters(k.stage), **k.params}[key] for key in ("model", "text_model")) if value]
    if not models or any(m.startswith((LOCAL_DIR, LOCAL_DIR_TEXT)) for m in models):
        return []
    runs = {get_model_spec(m).name for m in models}
    problems = []
    for kernel in (k for k in kernels if k.stage == "02_correlate"):
        params = {**stage_parameters(kernel.stage), **kernel.params}
        for name in ("runs", "baseline_runs"):
            problems += [f"{kernel.folder}: 02_correlate {name} names the 01 run {run!r}, which no 01_extract kernel "
                         f"of this build extracts (they extract {sorted(runs)}): the kernel would stop once 01 had "
                         f"run. Name runs 01 extracts in -p 02_correlate.{name}"
                         for run in params[name] if run not in runs]
    for kernel in (k for k in kernels if k.stage == "03_train"):
        params = {**stage_parameters(kernel.stage), **kernel.params}
        own = params["learner_params"].get("embedding")
        read = name_lists(params["learner_params"]).get("embeddings", params["embeddings"])  # as build_learner takes
        takes = "embeddings" in learner_signature(params["learner"]).parameters  # not ridge_tfidf, knn or finetune
        specs = [*(read if takes and isinstance(read, list) else []), *([own] if isinstance(own, str) and own else [])]
        for spec, run in ((spec, parse_embedding_spec(spec)[0]) for spec in specs):
            if run not in runs:
                problems.append(f"{kernel.folder}: 03_train run {params['run_name']!r} reads the 01 run {run!r} "
                                f"({spec!r}), which no 01_extract kernel of this build extracts (they extract "
                                f"{sorted(runs)}): the kernel would stop once 01 and 02 had run. Set "
                                f"-p 03_train.embeddings to runs 01 extracts, or extract {run!r} in 01")
    return problems


def runs_no_03_kernel_trains(kernels: Sequence[Any]) -> list[str]:
    """For each 04 kernel whose `runs`, or 05 kernel whose `source`, names a 03 run that none of the build's 03
    kernels trains, what to change (it would stop after every kernel before it had run); [] without 03 kernels."""
    trained = {{**stage_parameters(k.stage), **k.params}["run_name"] for k in kernels if k.stage == "03_train"}
    if not trained:
        return []
    problems = []
    for kernel in (k for k in kernels if k.stage in ("04_ensemble", "05_submit")):
        params = {**stage_parameters(kernel.stage), **kernel.params}
        named = params["runs"] if kernel.stage == "04_ensemble" else [params["source"]]
        problems += [f"{kernel.folder}: {kernel.stage} names the 03 run {run!r}, which no 03_train kernel of this "
                     f"build trains (they train {sorted(trained)}): the kernel would stop after the others had run. "
                     "Name one of those runs" + (" (or 04_ensemble)" if kernel.stage == "05_submit" else "")
                     for run in named if run not in trained and run != "04_ensemble"]
    return problems


FOLD_SETTINGS = ("n_folds", "fold_strategy", "seed")  # 02 probes in the folds 03 trains in when these agree


def folds_02_and_03_differ(kernels: Sequence[Any]) -> list[str]:
    """For each 02 kernel whose fold settings differ from a 03 kernel's, what to change: on Kaggle 02 runs before
    03 and probes in the folds 03 would make with its own settings (ml.folds.folds_to_come), so its scores would
    be measured on another split than the 03 run that uses the embeddings."""
    problems = []
    for probe in (k for k in kernels if k.stage == "02_correlate"):
        probed = {key: {**stage_parameters(probe.stage), **probe.params}[key] for key in FOLD_SETTINGS}
        for kernel in (k for k in kernels if k.stage == "03_train"):
            params = {**stage_parameters(kernel.stage), **kernel.params}
            differ = [f"{key} {probed[key]!r} vs {params[key]!r}" for key in FOLD_SETTINGS
                      if probed[key] != params[key]]
            if differ:
                problems.append(f"{probe.folder}: 02_correlate probes in other folds than 03_train run "
                                f"{params['run_name']!r} trains in ({', '.join(differ)}): its scores would not be "
                                "the run's split. Give -p 02_correlate and -p 03_train the same "
                                f"{'/'.join(FOLD_SETTINGS)}")
    return problems
