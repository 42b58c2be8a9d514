"""The code of the logged NER pyfunc model ("models from code"): MLflow runs this file to build
the model when it logs or loads it. See :mod:`medkit_exp.ner.mlflow.model`."""

import mlflow.models

from medkit_exp.ner.mlflow.model import EntityTaggerModel

mlflow.models.set_model(EntityTaggerModel())
