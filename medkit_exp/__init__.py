"""medkit_exp: experiment-tracking-first training for clinical NLP models.

Heavy libraries (torch, transformers, mlflow, optuna) are imported by the
sub-packages that use them, so importing ``medkit_exp`` itself stays cheap.
"""

__version__ = "0.1.0"
