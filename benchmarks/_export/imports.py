"""Imports of the export, measured in fresh ``python -c`` subprocesses (``-X importtime`` by package)."""

from __future__ import annotations

import os

# The caller's tracking settings must not reach the children (nbops sets its own at open).
_CALLER_ENV = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_HOME")}

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _export import HERE

#: Discovery: which modules opening a store and a first export import, and how long a
#: cold process takes for each step.  argv: notebook, work folder, output JSON path.
CHILD_DISCOVER = r"""
import time
t0 = time.perf_counter()
import nbops.exporting
t1 = time.perf_counter()
import sys
before_open = list(sys.modules)
import nbops
store = nbops.open(sys.argv[2] + "/store/.nbops")
t2 = time.perf_counter()
before_export = list(sys.modules)
result = nbops.exporting.export(sys.argv[1], out=sys.argv[2] + "/out", store=store)
t3 = time.perf_counter()
after = list(sys.modules)
import json
seen_open, seen_export = set(before_open), set(before_export)
json.dump({
    "import_s": t1 - t0, "open_s": t2 - t1, "export_s": t3 - t2,
    "base_modules": len(before_open),
    "open_modules": [m for m in before_export if m not in seen_open],
    "export_modules": [m for m in after if m not in seen_export],
    "version": result.version, "written": len(result.written),
}, open(sys.argv[3], "w"))
"""

#: Timing: import nbops.exporting, then the modules found above, phase by phase, in
#: their first-import order.  argv: the discovery JSON path, output JSON path.
CHILD_IMPORTS = r"""
import sys
import time
t0 = time.perf_counter()
import nbops.exporting
t1 = time.perf_counter()
sys.stderr.write("import time: 0 | 0 | ---phase open---\n")
import importlib
import json
found = json.load(open(sys.argv[1]))
times, failed = [t1 - t0], []
for phase in ("open_modules", "export_modules"):
    t = time.perf_counter()
    for name in found[phase]:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name)
    times.append(time.perf_counter() - t)
    sys.stderr.write("import time: 0 | 0 | ---phase export---\n" if phase == "open_modules" else "")
json.dump({"times": times, "failed": failed}, open(sys.argv[2], "w"))
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CALLER_ENV}
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_child(code: str, args: list[str], work: Path, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args]
    proc = subprocess.run(cmd, cwd=work, env=_child_env(), capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _top_level_imports(stderr: str) -> tuple[dict[str, dict[str, int]], dict[str, list[tuple[str, int]]]]:
    """From ``-X importtime``, per phase: cumulative microseconds of the depth-0 imports by
    top-level package, and the modules with the most self time."""
    phases: dict[str, dict[str, int]] = {"exporting": {}, "open": {}, "export": {}}
    own: dict[str, list[tuple[str, int]]] = {k: [] for k in phases}
    phase = "exporting"
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|", 2)
        if len(parts) != 3:
            continue
        cumulative, name = parts[1], parts[2]
        if name.strip().startswith("---phase"):
            phase = name.strip().removeprefix("---phase ").removesuffix("---")
            continue
        own[phase].append((name.strip(), int(parts[0].removeprefix("import time:").strip())))
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # " name" at depth 0, "   name" at 1, ...
        if depth != 0:
            continue
        top = name.strip().split(".")[0]
        phases[phase][top] = phases[phase].get(top, 0) + int(cumulative.strip())
    return phases, {k: sorted(v, key=lambda kv: -kv[1])[:5] for k, v in own.items()}


def measure_imports(notebook: Path, work: Path, runs: int) -> dict[str, Any]:
    """Cold-process figures: import nbops.exporting, first-use imports, first export."""
    discoveries = []
    for r in range(runs):
        d = work / f"discover{r}"
        d.mkdir()
        _run_child(CHILD_DISCOVER, [str(notebook), str(d), str(d / "found.json")], work)
        discoveries.append(json.loads((d / "found.json").read_text()))
    found_path = work / "discover0" / "found.json"
    timings = []
    for r in range(runs):
        out = work / f"imports{r}.json"
        _run_child(CHILD_IMPORTS, [str(found_path), str(out)], work)
        timings.append(json.loads(out.read_text()))
    proc = _run_child(CHILD_IMPORTS, [str(found_path), str(work / "importtime.json")], work, importtime=True)
    packages, heaviest = _top_level_imports(proc.stderr)
    first = discoveries[0]
    return {
        "import_exporting_s": [t["times"][0] for t in timings],
        "import_open_s": [t["times"][1] for t in timings],
        "import_export_s": [t["times"][2] for t in timings],
        "failed_imports": sorted({m for t in timings for m in t["failed"]}),
        "cold_import_s": [d["import_s"] for d in discoveries],
        "cold_open_s": [d["open_s"] for d in discoveries],
        "cold_export_s": [d["export_s"] for d in discoveries],
        "open_modules": len(first["open_modules"]),
        "export_modules": len(first["export_modules"]),
        "export_module_packages": sorted({m.split(".")[0] for m in first["export_modules"]}),
        "importtime_top_packages_us": packages,
        "importtime_heaviest_self_us": heaviest,
    }
