"""Write docs/config_reference.md from the config schemas and conf/.

Every key of every group comes from the dataclasses of ``medkit_exp/schema.py`` (and the
``TrainerConfig`` / ``NERDataConfig`` they use): its type, and its description from the class
docstring's ``Parameters`` section (else the comment beside the key in the group's default
file). Defaults are those Hydra composes from ``conf/`` with no override; group options and their
descriptions are the files of each ``conf/`` group and their leading comments.

    python scripts/gen_config_reference.py           # (re)write the page
    python scripts/gen_config_reference.py --check   # exit 1 when the page is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
OUTPUT = ROOT / "docs" / "config_reference.md"
APPLICATIONS = (
    ("python -m medkit_exp", "config", "MedkitExpConfig", "train (the default task)"),
    ("python -m medkit_exp.evaluate", "evaluate", "EvaluateConfig", "evaluate a checkpoint on a split"),
    ("python -m medkit_exp.predict", "predict", "PredictConfig", "tag documents with a saved tagger"),
)
# What the application does with a key beyond its schema description.
NOTES = {
    "trainer.learning_rate": "Always `${optimizer.lr}` (conf/trainer): set `optimizer.lr`; another value is refused.",
    "trainer.weight_decay": "Always `${optimizer.weight_decay}` (conf/trainer): set `optimizer.weight_decay`; another value is refused.",
    "trainer.max_grad_norm": "Always `${optimizer.max_grad_norm}` (conf/trainer): set `optimizer.max_grad_norm`; another value is refused.",
}


def docstring_parameters(cls: type) -> dict[str, str]:
    """``name: description`` entries of the ``Parameters`` section of a class docstring."""
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        return {}
    entries: dict[str, str] = {}
    indent, name = None, None
    for line in lines[start:]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        match = re.match(r"\s*(\w+): (.*)", line)
        if match and (indent is None or depth == indent):
            indent, name = depth, match.group(1)
            entries[name] = match.group(2).strip()
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """The file's leading comment (its description) and the comment of each key (dotted):
    beside it, or on the lines just above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header, position = [], 0
    while position < len(lines) and lines[position].startswith("#"):
        if not lines[position].startswith("# @package"):
            header.append(lines[position].lstrip("# ").strip())
        position += 1
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in lines[position:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = re.match(r"(\s*)([A-Za-z_]\w*):(.*)", line)
        if not match:
            above = []
            continue
        depth, key, rest = len(match.group(1)), match.group(2), match.group(3)
        stack = [(d, k) for d, k in stack if d < depth] + [(depth, key)]
        beside = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        text = " ".join(part for part in (" ".join(above), beside) if part)
        if text:
            comments[".".join(k for _, k in stack)] = text
        above = []
    return _first_sentences(header), comments


def _first_sentences(lines: list[str]) -> str:
    """The header's lines up to the first one ending a sentence (the rest is usually an example)."""
    kept = []
    for line in lines:
        kept.append(line)
        if line.endswith((".", ":")):
            break
    return " ".join(kept).rstrip(":")


def group_options() -> dict[str, list[tuple[str, str]]]:
    options = {}
    for folder in sorted(p for p in CONF.iterdir() if p.is_dir()):
        options[folder.name] = [(f.stem, yaml_comments(f)[0]) for f in sorted(folder.glob("*.yaml"))]
    return options


def primary_defaults(config_name: str) -> dict[str, str | None]:
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(CONF / f"{config_name}.yaml").defaults)
    return {next(iter(d)): next(iter(d.values())) for d in defaults if isinstance(d, dict)}


def composed(config_name: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import medkit_exp.cli  # noqa: F401 - these register the schemas
    import medkit_exp.evaluate  # noqa: F401
    import medkit_exp.predict  # noqa: F401

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name), resolve=False)


def show(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`" if value else "`{}`"
    return f"`{value}`"


def cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|") or "—"


def schema_rows(cls: type, values: dict[str, Any], comments: dict[str, str], prefix: str = "") -> list[str]:
    """One table row per field of ``cls`` (nested dataclasses flattened to dotted keys)."""
    docs = docstring_parameters(cls)
    rows = []
    for spec in dataclasses.fields(cls):
        key = f"{prefix}{spec.name}"
        value = values.get(spec.name) if isinstance(values, dict) else None
        nested = _dataclass_type(cls, spec)
        if nested is not None:
            rows += schema_rows(nested, value or {}, comments, prefix=f"{key}.")
            continue
        description = " ".join(filter(None, (docs.get(spec.name) or comments.get(key, ""), NOTES.get(key))))
        rows.append(f"| `{key}` | {cell(f'`{spec.type}`')} | {cell(show(value))} | {cell(description)} |")
    return rows


def _dataclass_type(cls: type, spec: dataclasses.Field) -> type | None:
    import typing

    from medkit_exp.config_keys import optional_dataclass

    hint = optional_dataclass(typing.get_type_hints(cls).get(spec.name))  # tracking: null when off
    return hint if dataclasses.is_dataclass(hint) else None


TABLE_HEAD = ["| key | type | default | description |", "|---|---|---|---|"]
#: Groups of open keys (a class's parameters), documented from their files rather than a schema.
OPEN_GROUPS = ("component", "callbacks")


def options_lines(group: str, options: dict[str, list[tuple[str, str]]], default: str | None) -> list[str]:
    lines = ["Options (`" + group + "=<option>`):", ""]
    for name, description in options.get(group, []):
        mark = " (default)" if name == default else ""
        lines.append(f"- `{name}`{mark}: {cell(description)}" if description else f"- `{name}`{mark}")
    return lines + [""]


def render() -> str:
    from medkit_exp import schema

    options = group_options()
    defaults = primary_defaults("config")
    values = composed("config")
    root_docs = docstring_parameters(schema.MedkitExpConfig)
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python scripts/gen_config_reference.py` from medkit_exp/schema.py and conf/;",
        "     do not edit by hand: tests/test_docs.py fails when this page is out of date. -->",
        "",
        "Every key below can be set on the command line (`python -m medkit_exp +experiment=ner "
        "trainer.batch_size=32`) or in a config file. Types come from the structured schemas in "
        "`medkit_exp/schema.py`: a misspelt key or a wrong type fails before any work, naming the key. "
        "Defaults are what `conf/` composes with no override; an experiment (`+experiment=...`) or a "
        "preset (`debug=fast`...) changes some of them.",
        "",
        "| command | primary config | schema | what it does |",
        "|---|---|---|---|",
        *[f"| `{cmd}` | `conf/{name}.yaml` | `{cls}` | {what} |" for cmd, name, cls, what in APPLICATIONS],
        "",
        "## Top-level keys",
        "",
        *TABLE_HEAD,
    ]
    groups = []
    for spec in dataclasses.fields(schema.MedkitExpConfig):
        if spec.name in OPEN_GROUPS or _dataclass_type(schema.MedkitExpConfig, spec) is not None:
            groups.append(spec.name)
            continue
        out.append(_row(spec, values.get(spec.name), root_docs))
    for group in groups:
        out += group_lines(group, options, defaults, values)
    for command, name, cls_name, _ in APPLICATIONS[1:]:
        cls = getattr(schema, cls_name)
        own = {f.name for f in dataclasses.fields(schema.MedkitExpConfig)}
        app_values = composed(name)
        docs = docstring_parameters(cls)
        out += ["", f"## `{command}`", "", f"`conf/{name}.yaml` composes the same groups as training and adds:", ""]
        out += TABLE_HEAD
        for spec in dataclasses.fields(cls):
            if spec.name not in own:
                out.append(_row(spec, app_values.get(spec.name), docs))
    out += ["", "## Groups without a schema", ""]
    for group in ("experiment", "debug", "hparams_search", "hydra"):
        if options.get(group):
            out += [f"### `{group}`", "", *options_lines(group, options, defaults.get(group))]
    return "\n".join(out).rstrip() + "\n"


def group_lines(group: str, options: dict[str, list[tuple[str, str]]], defaults: dict[str, str | None],
                values: dict[str, Any]) -> list[str]:
    """The section of one config group: its options, then its keys."""
    import typing

    from medkit_exp import schema

    root_docs = docstring_parameters(schema.MedkitExpConfig)
    out = ["", f"## Group `{group}`", ""]
    out += options_lines(group, options, defaults.get(group))
    comments = yaml_comments(CONF / group / f"{defaults[group]}.yaml")[1] if defaults.get(group) else {}
    if group == "component":
        return out + _component_lines(values["component"], comments)
    if group == "callbacks":
        return out + _entries_lines(group, values[group], comments)
    spec = next(f for f in dataclasses.fields(schema.MedkitExpConfig) if f.name == group)
    group_comments = {f"{group}.{key}": text for key, text in comments.items()}
    cls = _dataclass_type(schema.MedkitExpConfig, spec)
    out += TABLE_HEAD
    optional = typing.get_type_hints(schema.MedkitExpConfig)[group] is not cls
    if optional and values[group] is not None:  # an optional group: null turns it off
        out.append(f"| `{group}` | {cell(f'`{spec.type}`')} | the keys below | "
                   f"{cell(root_docs.get(group, ''))} |")
    out += schema_rows(cls, values[group], group_comments, f"{group}.")
    return out


def _row(spec: dataclasses.Field, value: Any, docs: dict[str, str]) -> str:
    return f"| `{spec.name}` | {cell(f'`{spec.type}`')} | {cell(show(value))} | {cell(docs.get(spec.name, ''))} |"


def _entries_lines(group: str, values: dict[str, Any], comments: dict[str, str]) -> list[str]:
    """An open group of named entries: each entry's keys as the group's files set them."""
    from medkit_exp.config_keys import _entries_in_files

    lines = [
        "Named entries, built in this order by one instantiator "
        "(`medkit_exp.callback_entries.instantiate_callbacks`): `_target_` names the class, the other keys "
        "are its parameters; `_partial_: true` names a factory also given the run (`run=RunContext`), "
        "which may return several callbacks; null turns an entry off. Add one with "
        "`+callbacks.NAME._target_=module.Class`. The entries of `conf/`:",
        "",
        "| key | set by | default there | description |",
        "|---|---|---|---|",
        f"| `{group}` | `{group}=default` | the entries below | named entries, each a `_target_` (null: off) |",
    ]
    for option, entry, names in _entries_in_files(group):
        file_comments = yaml_comments(CONF / f"{option.replace('=', '/')}.yaml")[1]
        prefix = "" if option.startswith(f"{group}=") else f"{group}."
        node = OmegaConf_load(CONF / f"{option.replace('=', '/')}.yaml")
        node = node if not prefix else node.get(group, {})
        raw = node.get(entry) if isinstance(node, dict) else None
        if not names:
            lines.append(f"| `{group}.{entry}` | `{option}` | {cell(show(raw))} | "
                         f"{cell(file_comments.get(f'{prefix}{entry}', ''))} |")
        for name in sorted(names, key=lambda n: (not n.startswith("_"), n)):
            value = raw.get(name) if isinstance(raw, dict) else None
            text = file_comments.get(f"{prefix}{entry}.{name}", "")
            lines.append(f"| `{group}.{entry}.{name}` | `{option}` | {cell(show(value))} | {cell(text)} |")
    return lines


def OmegaConf_load(path: Path) -> Any:  # noqa: N802 - the file as plain containers, unresolved
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _component_lines(values: dict[str, Any], comments: dict[str, str]) -> list[str]:
    lines = [
        "An open group: `_target_` names the class and the other keys are its constructor's "
        "parameters, checked against its signature when it is built (see the class docstring). "
        "The default, `hf_tagger`:",
        "",
        "| key | default | description |",
        "|---|---|---|",
    ]
    for key, value in values.items():
        lines.append(f"| `component.{key}` | {cell(show(value))} | {cell(comments.get(key, ''))} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run {sys.argv[0]} without --check", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
