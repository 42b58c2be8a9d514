"""What the Hydra applications (train, evaluate, predict) share without importing each other:
where ``conf/`` is. Importing it registers no schema and imports nothing heavy, so that each
application's ``--help`` composes only its own config (Hydra copies every registered schema for
each config group it lists)."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """``conf/`` beside the package in a source checkout, else the copy shipped in the wheel."""
    source = Path(__file__).resolve().parents[1] / "conf"
    if (source / "config.yaml").is_file():
        return str(source)
    return str(Path(__file__).resolve().parent / "conf")
