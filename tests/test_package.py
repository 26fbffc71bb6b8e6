"""Packaging: every module imports by its installed name, dependencies point one way, CI = README."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import tomllib

import clipsweep
import clipsweep.orchestrator
import clipsweep.trainers

ROOT = Path(__file__).resolve().parents[1]


def _modules(package) -> list[str]:
    return [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".") if not m.name.endswith("__main__")]


def test_every_source_folder_is_an_installed_package():
    """pyproject lists packages by hand; a folder missing from it would not install."""
    on_disk = {
        "clipsweep." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("trainers", "orchestrator")
        for p in (ROOT / top).rglob("__init__.py")
    }
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert on_disk | {"clipsweep"} == listed


def test_public_api_loads_lazily():
    import subprocess
    import sys

    code = "import sys, clipsweep; assert 'ray.tune' not in sys.modules; from clipsweep import Sweep, SweepResult; print(Sweep.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "clipsweep.orchestrator.api"
    with pytest.raises(AttributeError, match="no attribute 'Sweeep'"):
        clipsweep.Sweeep  # noqa: B018


@pytest.mark.parametrize("module", _modules(clipsweep.trainers) + _modules(clipsweep.orchestrator))
def test_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("path", sorted((ROOT / "trainers").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_trainers_never_import_orchestrator_tune_or_mlflow(path):
    forbidden = ("clipsweep.orchestrator", "orchestrator", "ray.tune", "mlflow")
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert not any(name == f or name.startswith(f + ".") for f in forbidden), f"{path}: imports {name}"


def test_ci_runs_the_readme_test_command_in_tiers():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3\.11 -m venv[^\n]+)\n```", readme)
    assert len(commands) == 2, "README must show exactly two set-up commands"
    setup, run_all = commands[1].rsplit(" && ", 1)
    assert run_all == "pytest -q"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    tiers = ['pytest -q -m "not integration"', "pytest -q -m integration"]
    assert ci[-4:] == [setup, "ruff check .", *tiers]  # lint, fast, integration: together `pytest -q`
    for tier in tiers:
        assert f"\n{tier}" in readme, f"README does not show the tier `{tier}`"
