"""Loading the extension: symmetric, idempotent, light, and automatic after install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from helpers import REPO
from nbops import magics

NBOPS_MAGICS = {"line": {"nbops", "snapshot", "features", "drift", "track", "export"}}


@pytest.fixture
def fresh_shell() -> InteractiveShell:
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def _our_magics(shell: InteractiveShell) -> set[str]:
    return {name for name in NBOPS_MAGICS["line"] if name in shell.magics_manager.magics["line"]}


def test_load_and_unload_are_symmetric_and_safe_twice(fresh_shell: InteractiveShell) -> None:
    before_line = dict(fresh_shell.magics_manager.magics["line"])
    before_registry = set(fresh_shell.magics_manager.registry)
    import nbops

    nbops.load_ipython_extension(fresh_shell)
    nbops.load_ipython_extension(fresh_shell)
    assert _our_magics(fresh_shell) == NBOPS_MAGICS["line"]
    assert magics.is_loaded(fresh_shell)
    nbops.unload_ipython_extension(fresh_shell)
    nbops.unload_ipython_extension(fresh_shell)
    assert fresh_shell.magics_manager.magics["line"] == before_line
    assert set(fresh_shell.magics_manager.registry) == before_registry
    fresh_shell.extension_manager.load_extension("nbops")
    assert _our_magics(fresh_shell) == NBOPS_MAGICS["line"]
    fresh_shell.extension_manager.unload_extension("nbops")
    assert _our_magics(fresh_shell) == set()


def test_loading_imports_no_heavy_library() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.extension_manager.load_extension("nbops")
        heavy = ["mlflow", "duckdb", "nbconvert", "pandas", "pyarrow", "sqlalchemy"]
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


STARTUP = Path(sys.prefix) / "etc" / "ipython" / "startup" / "90-nbops-autoload.py"


def _kernel_like_run(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Start IPython the way a kernel does (startup files run) and list our magics."""
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "NBOPS_HOME": str(tmp_path / ".nbops"), **env_extra}
    env.pop("NBOPS_NO_AUTOLOAD", None) if "NBOPS_NO_AUTOLOAD" not in env_extra else None
    code = (
        "print('MAGICS', sorted(m for m in get_ipython().magics_manager.magics['line'] if m in ('snapshot', 'nbops')))"
    )
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.skipif(not STARTUP.exists(), reason="nbops is not installed in this environment (pip install -e .)")
def test_installed_package_autoloads_in_every_ipython(tmp_path: Path) -> None:
    result = _kernel_like_run({}, tmp_path)
    assert "MAGICS ['nbops', 'snapshot']" in result.stdout, result.stderr
    assert "auto-load failed" not in result.stderr


@pytest.mark.skipif(not STARTUP.exists(), reason="nbops is not installed in this environment (pip install -e .)")
def test_autoload_can_be_turned_off(tmp_path: Path) -> None:
    result = _kernel_like_run({"NBOPS_NO_AUTOLOAD": "1"}, tmp_path)
    assert "MAGICS []" in result.stdout, result.stderr


def test_startup_file_never_breaks_start_up(tmp_path: Path) -> None:
    """Even when nbops cannot be imported, the startup file only warns."""
    source = REPO / "jupyter-config" / "ipython" / "startup" / "90-nbops-autoload.py"
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["nbops"] = None  # makes `import nbops` fail
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.safe_execfile({str(source)!r}, shell.user_ns, raise_exceptions=True)
        print("STARTED", "_nbops_autoload" in shell.user_ns)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "STARTED False" in out.stdout, out.stderr
    assert "nbops: auto-load failed" in out.stderr
