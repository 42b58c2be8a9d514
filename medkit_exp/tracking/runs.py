"""Former home of the run handle, the tracking URIs and the system metrics, now split by job:
:mod:`~medkit_exp.tracking.uris`, :mod:`~medkit_exp.tracking.run_handle`,
:mod:`~medkit_exp.tracking.system_metrics`, :mod:`~medkit_exp.tracking.options`. Its names are
re-exported here for the modules that still import them from it; new code imports the module
that holds them.
"""

from __future__ import annotations

from medkit_exp.tracking.messages import is_number
from medkit_exp.tracking.ops import logged_max_steps
from medkit_exp.tracking.options import checkpoint_kinds
from medkit_exp.tracking.params import trainer_config_dict
from medkit_exp.tracking.run_handle import RunHandle
from medkit_exp.tracking.uris import HTTP_ENV_DEFAULTS, configure_http_env, is_remote, resolve_tracking_uri

__all__ = [
    "HTTP_ENV_DEFAULTS", "RunHandle", "checkpoint_kinds", "configure_http_env", "is_number", "is_remote",
    "logged_max_steps", "resolve_tracking_uri", "trainer_config_dict",
]
