"""Every documented import works: names in ``__all__``, in the README and in docstrings.

A name resolves to the object documented for it, whatever was imported before: a function is
callable, a class is a class, nothing is a module (a package attribute can be replaced by a
submodule of the same name as soon as that submodule is imported anywhere).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import medkit_exp

ROOT = Path(__file__).resolve().parents[1]
IMPORT_LINE = re.compile(r"^\s*(?:>>>\s*)?(from\s+(medkit_exp[\w.]*)\s+import\s+([^#\n]+?)|import\s+(medkit_exp[\w.]*))\s*(?:#.*)?$")


def all_modules() -> list[str]:
    names = ["medkit_exp"]
    for info in pkgutil.walk_packages(medkit_exp.__path__, "medkit_exp."):
        if ".conf" in info.name or info.name.endswith("__main__"):
            continue  # config folders, and modules that run an application when imported
        names.append(info.name)
    return sorted(names)


def packages_with_all() -> list[str]:
    names = []
    for name in all_modules():
        module = importlib.import_module(name)
        if hasattr(module, "__path__") and hasattr(module, "__all__"):
            names.append(name)
    return names


def check_kind(owner: str, name: str, value: object) -> None:
    where = f"{owner}.{name}"
    assert not isinstance(value, types.ModuleType), f"{where} is the module {value.__name__}, not what it documents"
    if name.isupper():
        return  # a constant
    if name[:1].isupper():
        assert inspect.isclass(value) or callable(value), f"{where} should be a class, got {type(value).__name__}"
    else:
        assert callable(value) and not inspect.isclass(value), f"{where} should be a function, got {type(value).__name__}"


def documented_imports() -> list[tuple[str, str, list[str]]]:
    """(where, module, names) of every ``from medkit_exp... import`` in the README, docs and docstrings."""
    found = []
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "medkit_exp").rglob("*.py"))]
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = IMPORT_LINE.match(line)
            if not match or (path.suffix == ".py" and ">>>" not in line):
                continue  # in code, only docstring examples are documentation
            where = f"{path.relative_to(ROOT)}:{number}"
            if match.group(4):
                found.append((where, match.group(4), []))
            else:
                names = [n.strip().split(" as ")[0] for n in match.group(3).strip("() ").split(",") if n.strip()]
                found.append((where, match.group(2), names))
    return found


def test_every_submodule_imports():
    for name in all_modules():
        importlib.import_module(name)


@pytest.mark.parametrize("package", packages_with_all())
def test_every_name_in_all_is_what_it_documents_after_every_submodule_is_imported(package):
    for name in all_modules():
        importlib.import_module(name)  # submodules loaded: they must not shadow documented names
    module = importlib.import_module(package)
    for name in module.__all__:
        check_kind(package, name, getattr(module, name))


def test_the_documentation_has_imports_to_check():
    places = {where.split(":")[0] for where, _, _ in documented_imports()}
    assert "README.md" in places and len(documented_imports()) >= 5


def test_every_documented_import_works_in_a_fresh_interpreter_and_after_all_imports():
    imports = documented_imports()
    checks = "\n".join(
        f"check({where!r}, {module!r}, {names!r})" for where, module, names in imports
    )
    script = f"""
import importlib, inspect, sys, types
def check(where, module, names):
    owner = importlib.import_module(module)
    for name in names:
        value = getattr(owner, name)
        assert not isinstance(value, types.ModuleType), f"{{where}}: {{module}}.{{name}} is a module"
        if not name.isupper() and name[:1].islower():
            assert callable(value) and not inspect.isclass(value), f"{{where}}: {{module}}.{{name}} is not a function"
        elif name[:1].isupper() and not name.isupper():
            assert inspect.isclass(value) or callable(value), f"{{where}}: {{module}}.{{name}} is not a class"
{checks}
if sys.argv[1] == "after":
    for name in {all_modules()!r}:
        importlib.import_module(name)
{checks}
print("ok")
"""
    for order in ("fresh", "after"):
        result = subprocess.run([sys.executable, "-c", script, order], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_docstring_examples_run_as_written():
    """The ``>>>`` examples of every module give the output they show (those marked +SKIP aside)."""
    import doctest

    failed = {}
    for name in all_modules():
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False, verbose=False)
        if result.failed:
            failed[name] = result.failed
    assert failed == {}, f"docstring examples that no longer hold: {failed} (python -m pytest --doctest-modules MODULE)"
