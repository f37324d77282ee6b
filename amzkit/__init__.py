"""amzkit: from a product CSV with text and image links to a validated Kaggle submission.

The notebooks (01_extract .. 05_submit) are thin layers over this library; Python users call the same steps:

    import amzkit
    data = amzkit.load_data("data/", "amazon2025")
    amzkit.extract(data, "data/", "runs/x", "amazon2025", "minilm")
    amzkit.train_run(data, "amazon2025", "runs/x", "lgbm", embeddings=["minilm:pca:32"])
    amzkit.ensemble("runs/x")
    amzkit.submit("runs/x", data["test"], data["train"]["price"], "amazon2025", train=data["train"])

The package is layered (each imports only from the layers below it, checked by import-linter in `make test`):
core (schema, metric, file I/O, parameters) <- text | images (catalog parsing and text features; fetching,
decoding and image features) <- embed (model registry and embedders) <- ml (folds, fold transforms, learners,
the CV loop) <- stages (extract, correlate + leaks, train + tune, ensemble, submit + leaderboard) <- app
(notebook runners and parameters, Kaggle runtime and deploy, demo, CLI). The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access, so `import amzkit` stays cheap)
_EXPORTS: dict[str, str] = {
    # data and metric
    "SCHEMAS": "amzkit.core.schema", "get_schema": "amzkit.core.schema", "load_data": "amzkit.core.schema",
    "load_split": "amzkit.core.schema", "smape": "amzkit.core.metric", "METRICS": "amzkit.core.metric",
    # stages
    "extract": "amzkit.stages.extract", "correlate": "amzkit.stages.correlate",
    "leak_report": "amzkit.stages.leaks", "train_run": "amzkit.stages.train", "tune_preset": "amzkit.stages.tune",
    "ensemble": "amzkit.stages.ensemble", "submit": "amzkit.stages.submit",
    "validate_file": "amzkit.stages.submit", "validate_submission": "amzkit.stages.submit",
    # registries
    "MODELS": "amzkit.embed.registry", "registry_table": "amzkit.embed.registry",
    "create_embedder": "amzkit.embed.factory", "LEARNERS": "amzkit.ml.learners", "get_learner": "amzkit.ml.learners",
    "PRESETS": "amzkit.ml.presets", "FEATURE_GROUPS": "amzkit.text.features",
    "all_feature_groups": "amzkit.ml.featureset",
    # the protocol a new learner follows
    "Learner": "amzkit.ml.base", "RunInputs": "amzkit.ml.base", "cross_validate": "amzkit.ml.cv",
    # demo
    "make_demo": "amzkit.app.demo", "run_demo": "amzkit.app.runners",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'amzkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
