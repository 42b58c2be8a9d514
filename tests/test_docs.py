"""docs/: the config reference matches the schemas and conf/; the README's links and commands hold."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", ROOT / "scripts" / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_up_to_date_with_the_schemas_and_conf():
    text = _generator().render()
    assert (ROOT / "docs" / "config_reference.md").read_text(encoding="utf-8") == text, (
        "docs/config_reference.md is out of date: run python scripts/gen_config_reference.py"
    )


def test_config_reference_describes_every_schema_key():
    from medkit_exp import schema

    text = (ROOT / "docs" / "config_reference.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    undocumented = [row.split("|")[1].strip() for row in rows if row.endswith("| — |")]
    assert undocumented == [], "describe these keys in the schema docstring's Parameters (or a conf/ comment)"

    def keys(cls, prefix=""):
        for spec in dataclasses.fields(cls):
            hint = __import__("typing").get_type_hints(cls)[spec.name]
            if dataclasses.is_dataclass(hint):
                yield from keys(hint, f"{prefix}{spec.name}.")
            elif spec.name != "component":
                yield f"{prefix}{spec.name}"

    for cls in (schema.MedkitExpConfig, schema.EvaluateConfig, schema.PredictConfig):
        for key in keys(cls):
            assert f"| `{key}` |" in text, key


def test_readme_links_and_commands_point_to_what_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\(((?:docs|scripts|conf)/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
    for module in set(re.findall(r"python -m (medkit_exp(?:\.\w+)*)", readme)):
        path = ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module
    for entry_point in re.findall(r"mlflow run \. [^\n]*?-e (\w+)", readme):
        assert f"\n  {entry_point}:" in (ROOT / "MLproject").read_text(), entry_point
