"""Registers the medkit_exp Optuna sweeper with Hydra (see medkit_exp.sweeps)."""
