"""The house rules, checked on every `./dev test`: ruff, mypy (strict on the pure decision
code) and the import-linter layering contracts of pyproject.toml. Each check also gets a
deliberate violation, so a check that silently stopped checking would fail here too."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():
        pytest.fail(f"{exe} is missing: ./dev test installs the test extras (pyproject.toml)")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _passes(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def test_ruff_finds_nothing():
    _passes(_run("ruff", "check", "scheduler", "autoscaler", "benchmarks", "tests"))


def test_mypy_finds_nothing():
    _passes(_run("mypy"))


def test_the_layering_contracts_are_kept():
    _passes(_run("lint-imports"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the rules, to break on purpose."""
    for name in ("scheduler", "autoscaler", "benchmarks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_core_module_importing_the_extender_breaks_a_contract(tree: Path):
    (tree / "scheduler" / "core" / "leak.py").write_text("import scheduler.extender.live\n")
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=tree, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(tree), "PATH": str(BIN)})
    assert proc.returncode != 0
    assert "scheduler.core.leak -> scheduler.extender.live" in proc.stdout


def test_an_untyped_core_function_fails_mypy(tree: Path):
    (tree / "scheduler" / "core" / "untyped.py").write_text("def f(x):\n    return x\n")
    proc = _run("mypy", "--config-file", str(tree / "pyproject.toml"), str(tree / "scheduler" / "core" / "untyped.py"),
                cwd=tree)
    assert proc.returncode != 0
    assert "untyped.py:1: error: Function is missing a type annotation" in proc.stdout


def test_an_unused_import_fails_ruff(tree: Path):
    (tree / "scheduler" / "unused.py").write_text("import os\n")
    proc = _run("ruff", "check", "scheduler/unused.py", cwd=tree)
    assert proc.returncode != 0
    assert "F401" in proc.stdout
