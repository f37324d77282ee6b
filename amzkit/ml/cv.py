"""The one cross-validation loop: any learner of the registry, the work folder's shared folds, honest scores.

For each fold the learner is fit on that fold's training rows only (plus, with pseudo-labels, the chosen test
rows labelled by the source run's model of the same fold) and predicts the fold's rows and the test rows. The
fold's rows and labels never reach `fit`: what a learner tunes (early stopping, alpha) it tunes inside the
training rows. Test predictions are the geometric mean of the fold models'.

With several `devices` (Kaggle's two T4s) the folds are fit in one worker process per device, each holding its
own copy of the learner and taking the next fold when it is free; the folds are recorded in fold order, so the
run is the one a single device makes (bit for bit on CPU) and resumes the same way.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.core.gpu import usable_gpus
from amzkit.core.metric import constant_fold_smape, smape
from amzkit.core.progress import tqdm
from amzkit.ml.base import Learner
from amzkit.ml.pseudo import PseudoLabels


def fit_fold(learner: Learner, folds: np.ndarray, step: int, pseudo: PseudoLabels | None = None,
              models_dir: Path | None = None) -> dict:
    """Fit the prepared `learner` on fold number `step`'s training rows (and pseudo-labelled test rows); its
    predictions of the fold's rows and the test rows, what the fit chose, its importance (the model saved in
    `models_dir` when given)."""
    inputs = learner.inputs_
    y, test_rows = inputs.y, inputs.test_rows
    fold = np.unique(folds)[step]
    train_rows, valid_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    fit_rows, fit_y, weight = train_rows, y[train_rows], None
    if pseudo is not None and len(pseudo.rows):
        fit_rows = np.concatenate([train_rows, pseudo.rows])
        fit_y = np.concatenate([fit_y, pseudo.labels[int(fold)]])
        weight = np.concatenate([np.ones(len(train_rows)), np.full(len(pseudo.rows), pseudo.weight)])
    learner.fit(fit_rows, fit_y, weight)
    result = {"valid": learner.predict(valid_rows), "test": learner.predict(test_rows) if len(test_rows) else [],
              "report": learner.fit_report(), "importance": learner.feature_importance()}
    if models_dir is not None:
        learner.save_fold(models_dir, int(fold))
    return result


def devices_for_folds(learner: Learner, gpus: Callable[[], list[int]] = usable_gpus) -> list[str]:
    """Where to fit `learner`'s folds side by side: every usable GPU when there are several and the learner is
    one worth spreading (`spreads_folds`: a fold takes long on a GPU) with its `device` left at 'auto'; else []
    (every fold in this process, as always)."""
    if not getattr(learner, "spreads_folds", False) or getattr(learner, "device", None) != "auto":
        return []
    usable = gpus()
    return [f"cuda:{index}" for index in usable] if len(usable) > 1 else []


def check_fold_devices(learner: Learner, devices: Sequence[str]) -> None:
    """Refuse fold devices of another type than the learner's explicit `device`: a learner set to 'cpu' must not
    have its folds fit on GPUs (under a resume key that says cpu), nor one set to 'cuda' on the CPU. 'auto' goes
    where the devices say (devices_for_folds picks them for it)."""
    if "device" not in learner.get_params():
        raise ValueError(f"learner {learner.name!r} has no device parameter: its folds cannot be spread over "
                         f"{', '.join(devices)}")
    given = str(learner.get_params()["device"])
    kind = given.split(":")[0]
    other = sorted({device for device in devices if device.split(":")[0] != kind})
    if given != "auto" and other:
        raise ValueError(f"fold_devices {list(devices)} contradict learner {learner.name!r}'s device={given!r}: its "
                         f"folds would be fit on {', '.join(other)}. Give {kind} devices only (e.g. {[kind, kind]}), "
                         f"none (fold_devices=[]: every fold in this process, on {kind}), or set the learner's "
                         "device to 'auto' or to the type the folds should use")


_WORKER: dict = {}  # the learner of a fold worker process


def _start_worker(learner_class: type, params: dict, inputs, device: str) -> None:
    """A fold worker: the run's learner, prepared again in this process on `device` (quietly). A failure is kept
    and raised by the worker's first fold (an initializer's error reaches the parent only as a broken pool)."""
    try:
        if device.startswith("cuda:"):
            import torch  # deferred: only GPU workers need it here

            torch.cuda.set_device(int(device.split(":")[1]))  # 'cuda' below is this GPU
            device = "cuda"
        params = {**params, "device": device, **({"progress": False} if "progress" in params else {})}
        _WORKER["learner"] = learner_class(**params).prepare(inputs)
    except Exception as err:  # re-raised by _worker_fold, where the parent sees it
        err.add_note(f"(while preparing the learner on {device})")
        _WORKER["failed"] = err


def _worker_fold(folds: np.ndarray, step: int, pseudo, models_dir) -> dict:
    if "failed" in _WORKER:
        raise _WORKER["failed"]
    return fit_fold(_WORKER["learner"], folds, step, pseudo, models_dir)


def _folds_on_devices(learner: Learner, folds: np.ndarray, steps: Sequence[int], pseudo, models_dir,
                      devices: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """(step, fit_fold result) in step order, the folds fit by one worker process per device, each taking the next
    fold when it is free. A worker's failure stops the run (the folds recorded before it are kept)."""
    check_fold_devices(learner, devices)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    pools = [ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                                 initargs=(type(learner), learner.get_params(), learner.inputs_, device))
             for device in devices]
    waiting, running, done, finished_all = list(steps), {}, {}, False
    started = time.perf_counter()
    try:
        for pool, device in zip(pools, devices, strict=True):
            if waiting:
                step = waiting.pop(0)
                running[pool.submit(_worker_fold, folds, step, pseudo, models_dir)] = (step, pool, device)
        for step in steps:
            while step not in done:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    finished_step, pool, device = running.pop(future)
                    done[finished_step] = _fold_result(future, finished_step, device)
                    # the workers' own bars do not reach a notebook: a line per fold as it ends, in any order
                    print(f"fold {finished_step + 1} finished on {device} "
                          f"({time.perf_counter() - started:.0f} s into the run)", flush=True)
                    if waiting:
                        next_step = waiting.pop(0)
                        running[pool.submit(_worker_fold, folds, next_step, pseudo, models_dir)] = (
                            next_step, pool, device)
            yield step, done.pop(step)
        finished_all = True
    finally:
        for pool in pools:
            if not finished_all:  # stopped (a failure, an interrupt): a fold still running would keep its GPU busy
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
            pool.shutdown(wait=finished_all, cancel_futures=True)


def _fold_result(future: Future, step: int, device: str) -> dict:
    try:
        return future.result()
    except BaseException as err:
        err.add_note(f"fold {step + 1} failed in its worker on {device}; the folds recorded before it are kept and a "
                     "rerun resumes after them")
        raise


def cross_validate(learner: Learner, folds: np.ndarray, *, pseudo: PseudoLabels | None = None,
                   models_dir: Path | None = None, on_fold: Callable[[int, float], None] | None = None,
                   progress: bool = True, start_fold: int = 0, fold_done: Callable[[int, dict], None] | None = None,
                   previous: dict | None = None, devices: Sequence[str] = ()) -> dict:
    """OOF predictions, per-fold SMAPE (and the constant median's), test predictions, mean importance, and per
    fold what the fit chose (`Learner.fit_report`).

    `learner` must be prepared (`learner.prepare(inputs)`). `on_fold(step, mean_smape_so_far)` is called after
    each fold (a tuner prunes by raising from it). `fold_done(step, state)` receives the state after each fold
    and `previous` + `start_fold` resume from such a state (a killed session resumes at its first unfinished
    fold with the same result). Two or more `devices`: the folds are fit in a worker process per device.
    """
    inputs = learner.inputs_
    y, n_train = inputs.y, inputs.n_train
    if len(folds) != n_train:
        raise ValueError(f"folds has {len(folds)} entries for {n_train} train rows")
    test_rows = inputs.test_rows
    fold_ids = np.unique(folds)
    state = previous or {"oof": np.full(n_train, np.nan), "test_folds": np.zeros((len(fold_ids), len(test_rows))),
                         "fold_smape": [], "importance": [], "fit_reports": []}
    steps = range(start_fold, len(fold_ids))
    if len(devices) > 1 and len(steps) > 1:
        check_fold_devices(learner, devices)  # here, before any worker starts
        print(f"folds {start_fold + 1}-{len(fold_ids)} on {', '.join(devices)}: one worker process each")
        results = _folds_on_devices(learner, folds, steps, pseudo, models_dir, devices)
    else:
        results = ((step, fit_fold(learner, folds, step, pseudo, models_dir)) for step in steps)
    try:
        _record_folds(results, state, y, folds, fold_ids, start_fold, progress, fold_done, on_fold)
    finally:
        if hasattr(results, "close"):  # stop the fold workers when recording stopped (a tuner's prune, a kill)
            results.close()
    test = np.exp(np.log(state["test_folds"]).mean(axis=0)) if len(test_rows) else np.empty(0)
    importance = None
    if state["importance"]:  # the folds' mean, named as the learner names it (e.g. gain)
        importance = pd.concat(state["importance"], axis=1).mean(axis=1).rename(state["importance"][0].name)
    return {"oof": state["oof"], "test": test, "test_folds": state["test_folds"], "fold_smape": state["fold_smape"],
            "fold_constant_smape": constant_fold_smape(y, folds), "importance": importance,
            "fit_reports": state["fit_reports"]}


def _record_folds(results, state: dict, y: np.ndarray, folds: np.ndarray, fold_ids: np.ndarray, start_fold: int,
                  progress: bool, fold_done, on_fold) -> None:
    """Put each (step, fit_fold result) into `state`, in step order, and tell fold_done and on_fold."""
    for step, result in tqdm(results, desc="folds", disable=not progress, initial=start_fold, total=len(fold_ids)):
        valid_rows = np.flatnonzero(folds == fold_ids[step])
        state["oof"][valid_rows] = result["valid"]
        state["test_folds"][step] = result["test"]
        state["fold_smape"].append(smape(y[valid_rows], state["oof"][valid_rows]))
        state["fit_reports"].append(result["report"])
        if result["importance"] is not None:
            state["importance"].append(result["importance"])
        if fold_done is not None:
            fold_done(step, state)
        if on_fold is not None:
            on_fold(step, float(np.mean(state["fold_smape"])))
