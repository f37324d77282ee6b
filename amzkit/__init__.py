"""amzkit: from a product CSV with text and image links to a validated Kaggle submission.

Stages (one module each, one notebook each): extract, correlate, train, ensemble, submit.
Core modules that every stage imports: schema, metric, io.
"""

__version__ = "0.1.0"
