"""The benchmark scripts' own helpers (the scripts themselves take minutes; they are run by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_price_quality_finetune_line_skips_a_lightgbm_row_that_failed():
    # a failed row is a string in the table; the closing comparison must not index it (TypeError after the whole run)
    price_quality = load_script("price_quality")
    finetune = {"cv_smape": 60.0, "fold_std": 1.0, "seconds": 9.0}
    assert price_quality.finetune_verdict("minilm", finetune, "failed: MemoryError: ") == ""
    assert price_quality.finetune_verdict("minilm", "unavailable: learner 'finetune' cannot be loaded", finetune) == ""
    line = price_quality.finetune_verdict("minilm", finetune, {"cv_smape": 55.0, "fold_std": 1.0, "seconds": 3.0})
    assert line == "finetune minilm does not beat LightGBM default + minilm: 60.00 vs 55.00 (+5.00)"
