"""Optuna storages opened by several workers at once: one creates the tables, the others wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.sweeps.conftest import ROOT

OPEN_AND_JOIN = """
import sys
import optuna
from medkit_exp.sweeps.factories import make_storage
from medkit_exp.sweeps.study import open_study
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = make_storage(sys.argv[1])
study, created = open_study(storage, "shared", "maximize", None, None)
study.tell(study.ask(), 1.0)
print("created" if created else "joined")
"""


def test_workers_opening_a_new_sqlite_storage_together_share_one_study(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AND_JOIN, url], cwd=tmp_path, env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=300)
            results.append((process.returncode, out.strip(), err[-1500:]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [code for code, _, _ in results] == [0, 0, 0], results
    assert sorted(out for _, out, _ in results) == ["created", "joined", "joined"]
    import optuna

    assert len(optuna.load_study(study_name="shared", storage=url).trials) == 3
    assert (tmp_path / "optuna.db.lock").exists()  # the lock beside the database
