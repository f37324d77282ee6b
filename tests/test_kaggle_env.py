"""`make test-kaggle`'s environment is Kaggle's: constraints-kaggle.txt pins what the image table records, and in
.venv-kaggle the installed versions are those pins."""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement

from amzkit.app.kaggle_image import KAGGLE_IMAGE, KERNEL_PACKAGES, canonical, read_pins

KAGGLE_PINS = REPO_ROOT / "constraints-kaggle.txt"
NOT_PINNED = {"torch": "2.13.0 (CPU) stands in for Kaggle's 2.10.0+cu128",
              "torchvision": "left out: it does not import beside that torch, and only open_clip needs it",
              "timm": "left out with torchvision"}


def test_the_kaggle_constraints_pin_the_images_versions():
    pins = read_pins(KAGGLE_PINS)
    for name, row in KAGGLE_IMAGE.items():
        if row.version is None or name in NOT_PINNED:
            continue
        assert pins.get(canonical(name)) == row.version, f"{name}: constraints-kaggle.txt and KAGGLE_IMAGE differ"
    assert pins["torch"] == "2.13.0"
    assert {canonical(p) for p in KERNEL_PACKAGES} <= set(pins)  # every notebook's packages are pinned


def test_the_kaggle_extra_brings_a_cli_that_runs():
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {Requirement(r).name: Requirement(r) for r in extras["kaggle"]}
    assert set(names) == {"kaggle", "six"}  # kaggle 2.x imports six without requiring it
    assert names["kaggle"].specifier.contains("2.2.5") and not names["kaggle"].specifier.contains("1.7.4")


@pytest.mark.skipif(Path(sys.prefix).name != ".venv-kaggle", reason="checks .venv-kaggle: run by make test-kaggle")
def test_this_environment_has_kaggles_versions():
    for name, version in read_pins(KAGGLE_PINS).items():
        assert importlib.metadata.version(name).split("+")[0] == version, name  # torch 2.13.0+cpu
    for absent in ("open-clip-torch", "ftfy"):
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(absent)


@pytest.mark.skipif(Path(sys.prefix).name != ".venv-kaggle", reason="checks .venv-kaggle: run by make test-kaggle")
def test_the_real_minilm_loads_on_kaggles_transformers():
    """transformers 5.0 reports the checkpoint's `embeddings.position_ids` (a buffer the model makes) as unexpected;
    01's embedder and 03's finetune must still load the real weights, not refuse them."""
    import numpy as np

    from amzkit.embed.factory import create_embedder
    from amzkit.ml.finetune import encoder_spec, load_encoder

    _, embedder = create_embedder("minilm", device="cpu")
    x, ok = embedder.fit().transform(["Organic extra virgin olive oil, 1 liter bottle",
                                      "Cold-pressed organic olive oil in a 33.8 oz bottle",
                                      "Stainless steel dog bowl, set of 2"])
    sims = x.astype(np.float32) @ x[0].astype(np.float32)
    assert ok.all() and sims[1] > sims[2] + 0.2, sims
    _, encoder = load_encoder(encoder_spec("minilm")[0], "mean")
    assert sum(p.numel() for p in encoder.parameters()) > 20_000_000
