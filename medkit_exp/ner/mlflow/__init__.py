"""The NER tagger's plug-in of the MLflow tracking: what a tagger adds to its tracked run.

- :mod:`~medkit_exp.ner.mlflow.hooks`: :func:`ner_tracking_hooks`, the ``model_hooks`` factory of
  :func:`medkit_exp.tracking.factory.mlflow_callbacks` (label-map tags, model, dev report);
- :mod:`~medkit_exp.ner.mlflow.model`: the tagger as an MLflow pyfunc model (texts -> entities);
- :mod:`~medkit_exp.ner.mlflow.report`: the report on the dev set (per-label scores, confusion,
  a sample of predictions);
- :mod:`~medkit_exp.ner.mlflow.recorder`: the evaluations' predictions, kept for the report.

It may import :mod:`medkit_exp.tracking` (its hook protocol, plots) and mlflow; the rest of
:mod:`medkit_exp.ner` imports nothing from tracking. Importing this package imports nothing.
"""
