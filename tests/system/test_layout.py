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


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    """No import cycle, imports inside functions included (the contracts' acyclic check sees siblings only)."""
    import grimp

    graph = grimp.build_graph("nbops", include_external_packages=False, exclude_type_checking_imports=True)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = _cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges.get(root, [])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, []))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
