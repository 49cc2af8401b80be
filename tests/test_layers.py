"""The package's shape as contracts: the stages import only down the flow (import-linter's contracts in
pyproject.toml), and each module is one job, said on its docstring's first line, in about 400 lines."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "longformer_action"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    command = str(LINT_IMPORTS) if LINT_IMPORTS.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is missing: install the test extras (pip install -e '.[test]')"
    return subprocess.run(
        [command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_import_contracts_hold():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "BROKEN" not in result.stdout


def test_a_broken_contract_fails_the_check(tmp_path):
    # the same analysis with the layers turned upside down must find the imports that run down the flow
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "longformer_action"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "upside down"\ntype = "layers"\n'
        'layers = ["longformer_action.reading", "longformer_action.commands"]\n'
    )
    result = _lint_imports("--config", str(config))
    assert result.returncode != 0
    assert "longformer_action.commands.stages -> longformer_action.reading.checkpoint" in result.stdout


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_says_its_one_job_in_about_400_lines(path):
    source = path.read_text()
    assert len(source.splitlines()) <= 400, f"{path.name}: split it by job"
    if path.name == "__init__.py" and not source.strip():
        return
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring and docstring.splitlines()[0].strip(), f"{path.name}: the first docstring line says its job"


def test_the_action_steps_import_only_the_standard_library_the_choices_and_the_file_names():
    # as the runner's python3 runs them: no site-packages (-S), so no torch, no click
    code = (
        "import sys, longformer_action.action.validate_inputs, longformer_action.action.prepare_image; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('longformer_action'))))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    package = {m for m in result.stdout.split() if not m.startswith("longformer_action.action")}
    assert package == {
        "longformer_action",
        "longformer_action.registry",
        "longformer_action.registry.names",
        "longformer_action.registry.files",
    }
