"""Batches of tokenized texts for the `finetune` learner: dynamic padding, length buckets, or fixed length.

Texts are tokenized once per run (truncated to `max_len`, unpadded). A training epoch's batches come from a
PADDINGS row: 'bucket' shuffles the rows, sorts them by length inside chunks of BUCKET_BATCHES batches, cuts
batches there and shuffles the batches (neighbours in a batch have similar lengths, so little padding, yet the
order stays random); 'dynamic' pads random batches to their longest row; 'max_length' pads every batch to
`max_len` (the slow reference of benchmarks/finetune_speed.py). Prediction batches go longest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

BUCKET_BATCHES = 50  # batches per length-sorted chunk
PAD_MULTIPLE = 8  # dynamic lengths round up to a multiple of 8 (tensor-core friendly shapes on GPU), up to max_len


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Positions 0..len(lengths)-1 in batches of similar lengths, in random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Positions in random batches (no regard to length)."""
    order = rng.permutation(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def longest_first(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions in batches, longest rows first (prediction: the least padding, a fixed order)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass(frozen=True)
class Padding:
    """A padding scheme: how a training epoch is cut into batches and whether batches pad to max_len."""

    batches: Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]
    fixed_length: bool


PADDINGS: dict[str, Padding] = {
    "bucket": Padding(bucket_batches, fixed_length=False),
    "dynamic": Padding(random_batches, fixed_length=False),
    "max_length": Padding(random_batches, fixed_length=True),
}


def pad_tokens(tokens: list[np.ndarray], pad_id: int, max_len: int, fixed_length: bool = False
               ) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask of `tokens` (each at most `max_len` long) padded to `max_len` when
    `fixed_length`, else to the longest rounded up to a multiple of 8 but never past `max_len` (a model with
    `max_len` positions takes no more)."""
    longest = max(len(t) for t in tokens)
    length = max_len if fixed_length else min(max_len, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE)
    ids = np.full((len(tokens), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(tokens), length), dtype=np.int64)
    for i, row in enumerate(tokens):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
