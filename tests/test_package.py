"""Packaging: every module imports by its installed name, dependencies point one way, CI = README."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
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
    assert out.strip() == "clipsweep.orchestrator.sweep"
    with pytest.raises(AttributeError, match="no attribute 'Sweeep'"):
        clipsweep.Sweeep  # noqa: B018


@pytest.mark.parametrize("module", _modules(clipsweep.trainers) + _modules(clipsweep.orchestrator))
def test_module_imports(module):
    importlib.import_module(module)


_SOURCES = sorted([*(ROOT / "trainers").rglob("*.py"), *(ROOT / "orchestrator").rglob("*.py")])


@pytest.mark.parametrize("path", _SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_states_its_job_and_stays_small(path):
    """One job per module: a docstring that says it first, and at most 400 lines."""
    source = path.read_text()
    assert ast.get_docstring(ast.parse(source)), f"{path}: no module docstring stating its job"
    assert len(source.splitlines()) <= 400, f"{path}: {len(source.splitlines())} lines"


_FORBIDDEN_IN_TRAINERS = ("clipsweep.orchestrator", "orchestrator", "ray.tune", "mlflow")


def imported_modules(path: Path, source: str) -> list[str]:
    """Every module a file imports, relative imports resolved against its package
    (`trainers/objectives/clip.py`: `from ...orchestrator import x` is `clipsweep.orchestrator`)."""
    package = ["clipsweep", *path.relative_to(ROOT).parent.parts]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)]
            names += [".".join([*base, node.module])] if node.module else [".".join([*base, a.name]) for a in node.names]
    return names


def _forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in _FORBIDDEN_IN_TRAINERS)]


@pytest.mark.parametrize("path", sorted((ROOT / "trainers").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_trainers_never_import_orchestrator_tune_or_mlflow(path):
    assert _forbidden(imported_modules(path, path.read_text())) == [], path


@pytest.mark.parametrize(
    "source", ["from ...orchestrator import tune", "from ...orchestrator.keys import SCORE", "from ... import orchestrator",
               "import mlflow", "from ray.tune import report"],
)  # fmt: skip
def test_the_import_guard_resolves_relative_imports(source):
    assert _forbidden(imported_modules(ROOT / "trainers" / "objectives" / "clip.py", source)), source
    assert not _forbidden(imported_modules(ROOT / "trainers" / "objectives" / "clip.py", "from ..config import TrialConfig"))


def test_ci_runs_the_readme_test_command_in_tiers():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3\.11 -m venv[^\n]+)\n```", readme)
    assert len(commands) == 2, "README must show exactly two set-up commands"
    setup, run_all = commands[1].rsplit(" && ", 1)
    assert run_all == "pytest -q"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    tiers = ['pytest -q -m "not integration"', "pytest -q -m integration -n 2 --dist worksteal"]
    # the same install, byte-compiled on both cores; lint, fast, integration (each with its
    # slowest tests listed): together `pytest -q`
    install, compile_all = ci[-5:-3]
    assert install.replace(" --no-compile", "").replace(" --no-cache-dir", "") == setup and compile_all.startswith("python -m compileall")
    assert [line.split(" --durations=")[0] for line in ci[-3:]] == ["ruff check .", *tiers]
    for tier in tiers:
        assert f"\n{tier}" in readme, f"README does not show the tier `{tier}`"


def test_every_reference_to_a_design_document_resolves_inside_the_repository():
    """The design lives in docs/; code and pages cite only files that exist here."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    design = "DESIGN" + ".md"  # the document that lived outside the repository
    for path in [ROOT / name for name in tracked if name.endswith((".py", ".md", ".yaml"))]:
        text = path.read_text()
        assert design not in text, path
        for cited in re.findall(r"docs/[\w.-]+\.md", text):
            assert (ROOT / cited).is_file(), f"{path} cites {cited}"
        if path.parent.name == "docs" or path.name == "README.md":  # Markdown links between pages
            for link in re.findall(r"\]\(([^)#:]+\.md)\)", text):
                assert (path.parent / link).is_file(), f"{path} links {link}"
