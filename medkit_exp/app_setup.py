"""What the applications (train, evaluate, predict, the sweeper) set up for their own process.

- :func:`quiet_third_party`: no third-party progress bar (transformers' "Loading weights" and
  "Writing model shards", the hub's downloads, MLflow's "Downloading artifacts") and no
  transformers load report, in our runs only: the library code leaves these libraries alone,
  a user of the library keeps their settings. The tagger reads the loading info itself (a new
  head is logged with its label map; a checkpoint's missing head is a warning of its own).
- :class:`PlainFormatter`: log files without terminal colour codes (``conf/hydra/default.yaml``).
- :func:`apply_num_threads`: ``trainer.num_threads``, applied before any heavy work.
"""

from __future__ import annotations

import logging
import os
import re
import sys

logger = logging.getLogger("medkit_exp")

#: Environment of the process and of those it starts (the MLflow worker, DataLoader workers): set
#: only where the user has not set them.
QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # read by huggingface_hub (and so transformers) at import
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
#: The transformers loggers that write the load report of ``from_pretrained``.
LOAD_REPORT_LOGGERS = ("transformers.modeling_utils", "transformers.modeling_layers")
#: Terminal control sequences (colours, cursor moves).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")



class LoadReportFilter(logging.Filter):
    """Drops transformers' load report (a coloured table of missing and unexpected weights at every
    load), which the tagger reads as loading info and reports in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


class PlainFormatter(logging.Formatter):
    """A formatter for files: the record's text without terminal colour codes."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI_ESCAPE.sub("", super().format(record))


def quiet_third_party() -> None:
    """Silence third-party progress bars and the load report for this run (see the module doc).
    Idempotent; libraries already imported are told directly, the others read the environment."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in LOAD_REPORT_LOGGERS:
        target = logging.getLogger(name)  # the logger transformers will use, made before its import
        if not any(isinstance(f, LoadReportFilter) for f in target.filters):
            target.addFilter(LoadReportFilter())
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] != "1":
        return  # the user asked for the bars
    if "transformers" in sys.modules:  # imported before this run (a test, a notebook): its own switch
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    elif "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def apply_num_threads(requested: int | None) -> int:
    """Set torch's intra-op threads to ``requested`` (None: torch's own choice for this process,
    as it was before any run changed it, e.g. the previous trial of a sweep), before any heavy
    work; returns the number used, which the run records."""
    from medkit_exp.training.threads import use_threads

    threads = use_threads(requested)
    origin = "torch's choice" if requested is None else "trainer.num_threads"
    logger.info("CPU threads for torch: %d (%s)", threads, origin)
    return threads
