"""The layered layout keeps every old module path working, with a warning that names the new one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nbops._compat import MOVED


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_old_module_path_is_the_new_module_and_says_where_it_moved() -> None:
    checks = "\n".join(f"import {old} as a, {new} as b; assert a is b, {old!r}" for old, new in sorted(MOVED.items()))
    done = _run("import importlib\n" + checks + "\nprint('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    for old, new in MOVED.items():
        assert f"{old} moved to {new}; import it from there" in done.stderr


def test_the_warning_points_at_the_line_that_imports_the_old_path(tmp_path) -> None:
    script = tmp_path / "old_pipeline.py"
    script.write_text("import nbops\nfrom nbops.features import split_by_time\n")
    done = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"{script}:2: DeprecationWarning: nbops.features moved to nbops.featurestore.groups" in done.stderr


def test_names_of_the_old_tracking_module_resolve_in_the_tracking_package() -> None:
    done = _run(
        "from nbops.tracking import Run\nfrom nbops.tracking.experiments import Run as New\nassert Run is New\n"
        "import nbops.tracking\ntry:\n    nbops.tracking.no_such_name\nexcept AttributeError as e:\n    print(e)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "nbops.tracking.Run moved to nbops.tracking.experiments.Run" in done.stderr
    assert "has no attribute 'no_such_name'" in done.stdout


def test_reports_keep_their_old_home_on_the_store_module() -> None:
    import nbops.store
    from nbops.maintenance.gc import GcReport
    from nbops.maintenance.verify import VerifyReport

    assert nbops.store.VerifyReport is VerifyReport
    assert nbops.store.GcReport is GcReport
    with pytest.raises(AttributeError):
        nbops.store.NoSuchReport  # noqa: B018


def test_the_command_runs_as_a_module_and_as_a_script() -> None:
    for command in ([sys.executable, "-m", "nbops.cli", "--help"], [sys.executable, "-m", "nbops.cli", "nope"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert "usage: nbops" in done.stdout + done.stderr, done.stderr
    assert subprocess.run(command[:3] + ["--help"], capture_output=True, timeout=120).returncode == 0


def test_an_unknown_nbops_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        __import__("nbops.no_such_module")
