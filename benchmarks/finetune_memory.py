"""Memory of `finetune` training steps on a deberta-v3-base-sized encoder at batch 16 x max_len 256.

Does finetune on deberta-v3-base fit a 16 GB T4? A DebertaV2 model with deberta-v3-base's exact config
(184 M parameters, random weights: no download) is saved as a local-dir folder and the `finetune` learner itself
runs three optimizer steps (AdamW, fixed-length batches, so every batch is batch x max_len tokens; AdamW makes
its moments in the first step, so from the second on they are resident during the forward and backward passes):

- on a GPU: prints torch.cuda.max_memory_allocated / max_memory_reserved (fp16 autocast below compute capability
  8 as on a T4, bf16 above; `--precision fp16` imitates the T4 on a newer GPU) and whether it fits a T4
  (15,843,721,216 bytes = 14.76 GiB, less about 0.4 GiB of CUDA context that torch does not count);
- on CPU (fp32): samples a fresh process's resident memory during the steps at `--batch-size` and at a quarter
  of it (each in its own child process, so neither inherits the other's freed memory); the difference is what a
  row of activations costs, the rest is fixed (weights, gradients, AdamW state, the model's copies). The T4's
  peak at batch 16 is estimated as that fixed part + 16 rows of fp32 activations (an upper bound: autocast keeps
  most saved activations in fp16). `--batch-size` 4, 8 and 16 at max_len 64 estimated 5.5, 5.9 and 6.2 GiB.

    .venv/bin/python benchmarks/finetune_memory.py   (or `python3 benchmarks/finetune_memory.py` in a checkout
        where amzkit is not installed: the repository root is put on sys.path; lightgbm is not needed)
     [--device auto|cpu|cuda] [--batch-size 16] [--max-len 256]
        [--precision auto|fp16|bf16|fp32] [--gradient-checkpointing]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import BertTokenizer, DebertaV2Config, DebertaV2Model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without amzkit installed (a GPU box)
from amzkit.core.schema import get_schema
from amzkit.ml.base import RunInputs
from amzkit.ml.finetune import FinetuneLearner

# microsoft/deberta-v3-base's config.json (the architecture fields)
DEBERTA_V3_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512, "type_vocab_size": 0, "initializer_range": 0.02, "layer_norm_eps": 1e-7,
    "relative_attention": True, "max_relative_positions": -1, "position_buckets": 256, "norm_rel_ebd": "layer_norm",
    "share_att_key": True, "pos_att_type": ["p2c", "c2p"], "position_biased_input": False, "pad_token_id": 0,
    "vocab_size": 128100,
}
T4_GB = 14.3  # a T4 holds 14.76 GiB; the CUDA context (~0.4 GiB) is outside torch's max_memory_reserved
STEPS = 3  # optimizer steps measured: the peak comes from the second on (AdamW's moments exist by then)
WORDS = [f"w{i}" for i in range(2000)]


def rss_gb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


class PeakRss:
    """The highest resident memory seen while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.peak, self._stop = rss_gb(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_gb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_gb())


def deberta_folder(folder: Path) -> int:
    """Save a random deberta-v3-base-sized model with a word-level tokenizer; returns its parameter count."""
    torch.manual_seed(0)
    model = DebertaV2Model(DebertaV2Config(**DEBERTA_V3_BASE))
    count = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512).save_pretrained(folder)
    return count


def make_learner(folder: Path, args, batch_size: int):
    """The finetune learner on STEPS batches of rows that fill max_len, prepared; (learner, rows, y)."""
    rng = np.random.default_rng(0)
    n = STEPS * batch_size
    texts = [f"Item Name: {' '.join(rng.choice(WORDS, args.max_len + 50))}" for _ in range(n + 1)]
    train = pd.DataFrame({"sample_id": np.arange(n), "catalog_content": texts[:n], "image_link": "",
                          "price": np.exp(rng.normal(2.6, 1, n))})
    test = pd.DataFrame({"sample_id": [n], "catalog_content": texts[n:], "image_link": ""})
    inputs = RunInputs({"train": train, "test": test}, get_schema("amazon2025"), folder.parent, seed=0)
    learner = FinetuneLearner(model=f"local-dir:{folder}", max_len=args.max_len, batch_size=batch_size, epochs=1,
                              padding="max_length", valid_fraction=0.0, device=args.device,
                              precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
                              num_threads=args.threads, progress=False).prepare(inputs)
    assert (learner.lengths_[:n] == args.max_len).all(), "every row must fill max_len"
    return learner, np.arange(n), inputs.y


def cpu_step_memory(folder: Path, args, batch_size: int, out) -> None:
    """In a child process: GiB the training steps add to resident memory at `batch_size`, and their seconds."""
    learner, rows, y = make_learner(folder, args, batch_size)
    before = rss_gb()
    with PeakRss() as peak:
        learner.fit(rows, y)
        assert learner.history_.steps == STEPS, learner.history_
    out.put((peak.peak - before, learner.history_.seconds))


def in_child(folder: Path, args, batch_size: int) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=cpu_step_memory, args=(folder, args, batch_size, out))
    child.start()
    while True:
        try:
            result = out.get(timeout=5)
            break
        except queue.Empty:
            if not child.is_alive():  # killed (out of memory) before it could answer
                raise SystemExit(f"the child measuring batch {batch_size} died (exit code {child.exitcode}): out of "
                                 "memory? try a smaller --batch-size or --max-len") from None
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # the 700 MB model folder goes with it
        measure(args, Path(tmp) / "deberta-v3-base-random")


def measure(args, folder: Path) -> None:
    """Save the model in `folder`, measure its steps (on the GPU, or on CPU in two child processes), print."""
    params = deberta_folder(folder)
    learner, rows, y = make_learner(folder, args, args.batch_size)
    device = learner.device_
    state_gb = 16 * params / 2**30  # fp32 weights 4 + gradients 4 + AdamW moments 8 bytes a parameter
    print(f"deberta-v3-base-sized encoder: {params / 1e6:.1f} M parameters; {STEPS} steps at batch {args.batch_size} "
          f"x {args.max_len} on {device} ({learner.amp_ or 'fp32'}), gradient checkpointing "
          f"{args.gradient_checkpointing}")
    print(f"fp32 weights + gradients + AdamW state: {state_gb:.2f} GiB")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        learner.fit(rows, y)
        assert learner.history_.steps == STEPS, learner.history_
        allocated = torch.cuda.max_memory_allocated(device) / 2**30
        reserved = torch.cuda.max_memory_reserved(device) / 2**30
        print(f"torch.cuda.max_memory_allocated {allocated:.2f} GiB, max_memory_reserved {reserved:.2f} GiB "
              f"({torch.cuda.get_device_name(device)})")
        print(f"finetune_memory: peak {reserved:.2f} GiB reserved -> "
              f"{'FITS' if reserved < T4_GB else 'DOES NOT FIT'} a T4's ~{T4_GB:.1f} GiB")
        return
    del learner
    small = max(1, args.batch_size // 4)
    if small == args.batch_size:
        raise SystemExit("--batch-size must be at least 2: the estimate compares it with a quarter of it")
    extra_small, _ = in_child(folder, args, small)
    extra, seconds = in_child(folder, args, args.batch_size)
    per_row = max(0.0, (extra - extra_small) / (args.batch_size - small))
    fixed = extra - per_row * args.batch_size
    at_16 = fixed + per_row * 16
    print(f"CPU fp32 steps add {extra_small:.2f} GiB at batch {small} and {extra:.2f} GiB at batch "
          f"{args.batch_size} ({seconds:.0f} s): {per_row:.3f} GiB of activations a row of {args.max_len} tokens, "
          f"{fixed:.2f} GiB fixed (of which {state_gb:.2f} GiB weights, gradients and AdamW state)")
    print(f"finetune_memory: T4 estimate at batch 16 x {args.max_len}: {at_16:.2f} GiB upper bound (fp32 activations; "
          f"fp16 autocast stores about half) -> {'FITS' if at_16 < T4_GB else 'MAY NOT FIT'} a T4's ~{T4_GB:.1f} GiB")


if __name__ == "__main__":
    main()
