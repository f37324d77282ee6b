"""The 02_correlate leak report at competition scale: 75,000 train x 75,000 test catalog texts.

Texts are built from the real rows in ../shared/data or $AMZKIT_SHARED_DATA (their words, reshuffled and partly
replaced so that every synthetic product is distinct), with a known share of test rows planted as exact or
edited copies of train rows. Prints the wall time and peak memory of `duplicate_report` (names, TF-IDF text,
image links), how many planted twins it found, and its speed against sklearn's dense `cosine_similarity` +
argmax on a subset run in the same process (the dense baseline cannot hold 75k x 75k).

    .venv/bin/python benchmarks/leak_report_speed.py [--rows 75000] [--planted 0.05] [--subset 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.images.hashes import COLOUR_GRID, nearest_hash
from amzkit.stages.leaks import duplicate_report, summarize_report
from amzkit.text.similarity import nearest_text, tfidf_rows

SHARED = Path(os.environ.get("AMZKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def source_texts() -> list[str]:
    needed = [SHARED / "amz25_sample_test.csv", SHARED / "amz23_dev.csv"]
    if missing := [str(path) for path in needed if not path.is_file()]:
        raise SystemExit(f"leak_report_speed builds its texts from real rows: {', '.join(missing)} not found; set "
                         "AMZKIT_SHARED_DATA to the folder holding amz25_sample_test.csv and amz23_dev.csv")
    texts = pd.read_csv(needed[0])["catalog_content"].fillna("").tolist()
    dev = pd.read_csv(needed[1])
    texts += (dev["TITLE"].fillna("") + "\n" + dev["BULLET_POINTS"].fillna("")).tolist()
    return [t for t in texts if t.strip()]


def synthetic_products(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct catalog texts: a real row's words, 30% replaced by words of other rows, plus a made-up name."""
    texts = source_texts()
    tokens = [re.findall(r"\S+", t) for t in texts]
    vocabulary = np.array(sorted({w for ws in tokens for w in ws}))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out = []
    for _ in range(n):
        words = np.array(tokens[rng.integers(len(tokens))], dtype=object)
        swap = rng.random(len(words)) < 0.3
        words[swap] = rng.choice(vocabulary, int(swap.sum()))
        name = "".join(rng.choice(letters, 8)) + " " + "".join(rng.choice(letters, 6))
        out.append(f"Item Name: {name} {' '.join(words[:12])}\nBullet Point 1: {' '.join(words[12:])}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=75_000, help="rows per split")
    parser.add_argument("--planted", type=float, default=0.05, help="share of test rows copied from train")
    parser.add_argument("--subset", type=int, default=10_000, help="rows per split for the dense baseline")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    products = synthetic_products(2 * args.rows, rng)
    train_text, test_text = products[:args.rows], products[args.rows:]
    planted = rng.choice(args.rows, int(args.planted * args.rows), replace=False)
    sources = rng.choice(args.rows, len(planted), replace=False)
    for number, (row, source) in enumerate(zip(planted, sources, strict=True)):
        if number % 2:  # the same listing again, with a line added: same item name
            test_text[row] = train_text[source] + " (new listing)"
        else:  # the item name reworded: only the text similarity can find it
            head, rest = train_text[source].split("\n", 1)
            test_text[row] = head.replace("Item Name: ", "Item Name: New ") + " Value Pack\n" + rest
    train = pd.DataFrame({"sample_id": np.arange(args.rows), "catalog_content": train_text, "image_link": "",
                          "price": np.exp(rng.normal(2.7, 0.8, args.rows))})
    test = pd.DataFrame({"sample_id": np.arange(args.rows, 2 * args.rows), "catalog_content": test_text,
                         "image_link": ""})
    print(f"data: {args.rows:,} train + {args.rows:,} test texts, {len(planted):,} planted copies "
          f"({time.perf_counter() - started:.0f} s to make)")

    rss_before = peak_rss_gb()
    t = time.perf_counter()
    report = duplicate_report(train, test, "amazon2025")
    seconds = time.perf_counter() - t
    summary = summarize_report(report)
    found = report.set_index("test_id").loc[args.rows + planted]
    hit = float((found["train_id"].to_numpy() == sources).mean())
    false = int((report.drop(index=planted)["kind"] != "none").sum())
    print(f"full report {args.rows:,} x {args.rows:,}: {seconds:.0f} s, peak RSS {peak_rss_gb():.2f} GB "
          f"(before {rss_before:.2f} GB)")
    # the image-hash search on its own (hashing the pictures is 01-cache decoding, timed by image_features_speed)
    hashes = rng.integers(0, np.iinfo(np.int64).max, (2, args.rows), dtype=np.int64).astype(np.uint64)
    colours = rng.uniform(0, 255, (2, args.rows, COLOUR_GRID * COLOUR_GRID * 3)).astype(np.float32)
    names = np.arange(args.rows).astype(str)
    t = time.perf_counter()
    nearest_hash(hashes[1], hashes[0], 4, names, colours[1], colours[0])
    print(f"image-hash search {args.rows:,} x {args.rows:,} (random hashes): {time.perf_counter() - t:.0f} s, "
          f"peak RSS {peak_rss_gb():.2f} GB")
    print(f"twins found: {summary['with_twin']:,} ({summary['by_kind']}); planted copies matched to their source: "
          f"{hit:.1%}; other test rows reported as twins: {false:,}")

    # the same nearest-text search against sklearn's dense cosine_similarity, on a subset: after the report, whose
    # peak RSS would otherwise be the dense matrix's (ru_maxrss only grows)
    from sklearn.metrics.pairwise import cosine_similarity

    n = min(args.subset, args.rows)
    _, matrix = tfidf_rows(train_text[:n] + test_text[:n])
    queries, reference = matrix[n:], matrix[:n]
    t = time.perf_counter()
    dense = cosine_similarity(queries, reference)
    dense_best = dense.argmax(axis=1)
    dense_s = time.perf_counter() - t
    del dense
    t = time.perf_counter()
    ours_best, _ = nearest_text(queries, reference)
    ours_s = time.perf_counter() - t
    agree = float((ours_best == dense_best).mean())
    print(f"subset {n:,} x {n:,}: blocked sparse {ours_s:.1f} s vs dense cosine_similarity {dense_s:.1f} s "
          f"-> {dense_s / ours_s:.2f}x; same nearest row for {agree:.2%} of queries")


if __name__ == "__main__":
    main()
