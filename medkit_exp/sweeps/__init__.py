"""Hyperparameter sweeps with Optuna: the Hydra sweeper ``hydra/sweeper=medkit_optuna``.

- :mod:`~medkit_exp.sweeps.sweeper`: the ask/tell loop around Hydra's launcher (one trial at a time).
- :mod:`~medkit_exp.sweeps.config`: its config (Hydra's Optuna sweeper's keys, plus pruner,
  failure rate, heartbeat), registered in Hydra's ConfigStore.
- :mod:`~medkit_exp.sweeps.search_space`: Hydra's override grammar -> Optuna distributions, checked.
- :mod:`~medkit_exp.sweeps.factories`: samplers, pruners and storages from the config.
- :mod:`~medkit_exp.sweeps.trial_context` and :mod:`~medkit_exp.sweeps.pruning`: the running job sees
  its trial; a training callback reports each evaluation and prunes.
- :mod:`~medkit_exp.sweeps.budget` and :mod:`~medkit_exp.sweeps.heartbeat`: ``n_trials`` over the
  whole study, shared by workers; trials of dead workers failed and run again.
- :mod:`~medkit_exp.sweeps.mlflow_parent`, :mod:`~medkit_exp.sweeps.plots`,
  :mod:`~medkit_exp.sweeps.results`: the parent MLflow run, its plots, ``optimization_results.yaml``.

Nothing heavy is imported here: the application imports :mod:`~medkit_exp.sweeps.trial_context` on start.
"""
