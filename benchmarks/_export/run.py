"""The export benchmark itself: the notebook, figures 1-4, stage timers and a profile, then the report."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _export.imports import measure_imports
from _export.notebook import STEM, TINY_NOTEBOOK, build_notebook, write_notebook
from _export.report import Figure, fmt_ms, fmt_rounds, git_state, loadavg, print_figures, sources_digest
from _export.stages import STAGE_ROWS, hot_spots, profile_export, stage_breakdown
from _export.timing import check_generated, run_rounds, time_size

TARGET_SECONDS = 1.0


def run(args: argparse.Namespace, work: Path) -> int:
    os.environ["IPYTHONDIR"] = str(work / "ipython")
    import IPython
    import nbformat

    env = {
        "python": platform.python_version(),
        "nbformat": nbformat.__version__,
        "ipython": IPython.__version__,
        "cpus": os.cpu_count(),
        "git": git_state(),
        "exporting_sources": sources_digest(),
        "loadavg_start": loadavg(),
        "repeats": args.repeats,
    }
    print(
        f"nbops export benchmark: python {env['python']}, nbformat {env['nbformat']}, IPython {env['ipython']}, "
        f"{env['cpus']} CPUs, git {env['git']}, exporting sources {env['exporting_sources']}, "
        f"load average {env['loadavg_start']}",
        flush=True,
    )

    # -- the notebook ------------------------------------------------------------------
    nb_dir = work / "nb"
    nb_dir.mkdir()
    if args.notebook:
        notebook = nb_dir / args.notebook.name
        shutil.copyfile(args.notebook, notebook)
        nb = nbformat.read(notebook, as_version=4)
        nb_info: dict[str, Any] = {
            "code_cells": sum(c.cell_type == "code" for c in nb.cells),
            "markdown_cells": sum(c.cell_type == "markdown" for c in nb.cells),
        }
    else:
        notebook = nb_dir / f"{STEM}.ipynb"
        nb, nb_info = build_notebook(args.cells, args.seed, not args.no_outputs)
        write_notebook(notebook, nb)
    nb_info["bytes"] = notebook.stat().st_size
    nb_info["sha256"] = hashlib.sha256(notebook.read_bytes()).hexdigest()[:16]
    print(
        f"notebook {notebook.name}: {nb_info['code_cells']} code cells, {nb_info['markdown_cells']} markdown cells, "
        f"{nb_info['bytes']:,} B (sha256 {nb_info['sha256']})"
    )
    if "kinds" in nb_info:
        print("  code cells by kind: " + ", ".join(f"{k} {v}" for k, v in nb_info["kinds"].items()))
        print(
            "  stage cells by how they get their stage: "
            + ", ".join(f"{k} {v}" for k, v in nb_info["stage_ways"].items())
            + f"; {nb_info['source_lines']} source lines, {nb_info['magic_lines']} magic / shell lines"
        )

    # -- 3. imports, cold processes --------------------------------------------------------
    print(f"[1/5] imports and a cold first export, {args.import_runs} fresh subprocess(es) each ...", flush=True)
    imports = measure_imports(notebook, work, args.import_runs)

    # -- 1, 2. export after imports ----------------------------------------------------------
    print(f"[2/5] export after imports, {args.repeats} rounds (fresh out dir and store each) ...", flush=True)
    import nbops
    from nbops.exporting import export

    warm = work / "warm"
    warm.mkdir()
    (warm / "tiny.ipynb").write_text(json.dumps(TINY_NOTEBOOK))
    warm_store = nbops.open(warm / ".nbops")
    export(warm / "tiny.ipynb", out=warm / "out", store=warm_store)  # every first-use import, untimed
    warm_store.close()
    rounds, result = run_rounds(notebook, work, args.repeats)
    generated = check_generated(result)

    # -- 4b. other sizes ---------------------------------------------------------------------
    sizes = []
    scale = [int(x) for x in args.scale_cells.split(",") if x.strip()] if not args.notebook else []
    if scale:
        print(f"[3/5] other notebook sizes {scale}, best of {args.scale_repeats} ...", flush=True)
        for cells in scale:
            sizes.append(time_size(cells, args.seed, not args.no_outputs, work, max(1, args.scale_repeats)))
    else:
        print("[3/5] other notebook sizes: skipped", flush=True)

    # -- where the time goes -------------------------------------------------------------------
    print("[4/5] stage timers (one first and one unchanged export, no profiler) ...", flush=True)
    stages = stage_breakdown(notebook, work)
    spots = hot_spots(notebook, min(args.repeats, 3))
    print("[5/5] cProfile of one more export ...", flush=True)
    profile = profile_export(notebook, work, args.profile_top)
    env["loadavg_end"] = loadavg()

    # -- figures ---------------------------------------------------------------------------------
    first = [r.first_s for r in rounds]
    again = [r.unchanged_s for r in rounds]
    versions_kept = all(r.version_unchanged == r.version_first == 1 for r in rounds)
    nothing_rewritten = all(
        not r.written_unchanged and r.result_unchanged and r.files_same and r.catalog_rows == 1 for r in rounds
    )
    catalog_changed = sum(r.catalog_file_changed for r in rounds)
    n = nb_info["code_cells"]
    figures = [
        Figure(
            "1",
            f"export {n} cells, fresh out dir + fresh store (best of {args.repeats})",
            fmt_ms(min(first)),
            fmt_rounds(first),
            f"<={TARGET_SECONDS:g} s",
            min(first) <= TARGET_SECONDS,
            min(first),
        ),
        Figure(
            "1b",
            "  same, CPU time (process_time)",
            fmt_ms(min(r.first_cpu_s for r in rounds)),
            fmt_rounds([r.first_cpu_s for r in rounds]),
            seconds=min(r.first_cpu_s for r in rounds),
        ),
        Figure(
            "2",
            f"export again, unchanged (best of {args.repeats})",
            fmt_ms(min(again)),
            fmt_rounds(again),
            seconds=min(again),
        ),
        Figure(
            "2a",
            "  same, CPU time (process_time)",
            fmt_ms(min(r.unchanged_cpu_s for r in rounds)),
            fmt_rounds([r.unchanged_cpu_s for r in rounds]),
            seconds=min(r.unchanged_cpu_s for r in rounds),
        ),
        Figure(
            "2b",
            "  unchanged keeps its version (v1 -> v1, every round)",
            "kept" if versions_kept else "CHANGED",
            target="same",
            ok=versions_kept,
        ),
        Figure(
            "2c",
            "  unchanged rewrites nothing (written=[], inode/size/mtime, 1 row)",
            "0 files" if nothing_rewritten else "REWROTE",
            target="0 files",
            ok=nothing_rewritten,
        ),
        Figure(
            "2d",
            "  unchanged: catalog.db / -wal file changed (UPDATE out_dir)",
            f"{catalog_changed}/{len(rounds)} rounds",
        ),
        Figure(
            "3",
            f"cold: import nbops.exporting (best of {args.import_runs})",
            fmt_ms(min(imports["import_exporting_s"])),
            fmt_rounds(imports["import_exporting_s"]),
            seconds=min(imports["import_exporting_s"]),
        ),
        Figure(
            "3b",
            f"cold: + first-use imports of export() ({imports['export_modules']} modules)",
            fmt_ms(min(imports["import_export_s"])),
            fmt_rounds(imports["import_export_s"]),
            seconds=min(imports["import_export_s"]),
        ),
        Figure(
            "3c",
            f"cold: + imports of nbops.open() ({imports['open_modules']} modules)",
            fmt_ms(min(imports["import_open_s"])),
            fmt_rounds(imports["import_open_s"]),
            seconds=min(imports["import_open_s"]),
        ),
        Figure(
            "3d",
            "cold: first export in a fresh process (its imports included)",
            fmt_ms(min(imports["cold_export_s"])),
            fmt_rounds(imports["cold_export_s"]),
            seconds=min(imports["cold_export_s"]),
        ),
        Figure(
            "3e",
            "cold: nbops.open() of a new store (its imports included)",
            fmt_ms(min(imports["cold_open_s"])),
            fmt_rounds(imports["cold_open_s"]),
            seconds=min(imports["cold_open_s"]),
        ),
        Figure(
            "4",
            f"plan() alone, nothing written (best of {args.repeats})",
            fmt_ms(min(r.plan_s for r in rounds)),
            fmt_rounds([r.plan_s for r in rounds]),
            seconds=min(r.plan_s for r in rounds),
        ),
    ]
    for s in sizes:
        figures.append(
            Figure(
                "4b",
                f"export {s['cells']} cells, fresh out + store (best of {len(s['times_s'])}; "
                f"{s['best_s'] / s['cells'] * 1000:.1f} ms/cell)",
                fmt_ms(s["best_s"]),
                fmt_rounds(s["times_s"]),
                seconds=s["best_s"],
            )
        )

    # -- report ----------------------------------------------------------------------------------
    print(
        f"\nResults: {n} code cells + {nb_info['markdown_cells']} markdown, load average "
        f"{env['loadavg_start']} -> {env['loadavg_end']} (1/5/15 min; other load skews wall times, CPU less)\n"
    )
    print_figures(figures)
    print(
        "\nGenerated: "
        + ", ".join(f"{k} {v} lines" for k, v in generated["files"].items())
        + "; cells per module: "
        + ", ".join(f"{k} {v}" for k, v in generated["stage_cells"].items())
        + f"; {len(generated['findings'])} findings; {generated['dropped_cells']} cells with dropped magics/displays; "
        + (
            "all modules compile"
            if not generated["compile_errors"]
            else f"COMPILE ERRORS {generated['compile_errors']}"
        )
    )
    if imports["failed_imports"]:
        print(f"(modules not re-importable by name in the import child, skipped: {imports['failed_imports']})")
    for phase, label in (
        ("exporting", "import nbops.exporting"),
        ("export", "first-use imports of export()"),
        ("open", "imports of nbops.open()"),
    ):
        top = sorted(imports["importtime_top_packages_us"][phase].items(), key=lambda kv: -kv[1])[:8]
        print(f"-X importtime, {label}: " + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in top))
        print(
            "    heaviest modules (self time): "
            + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in imports["importtime_heaviest_self_us"][phase][:3])
        )

    print("\nStages of one export (wrapped timers, inclusive, no profiler): first | unchanged")
    base = stages["first"]["export"][0] or 1.0
    for label, depth in STAGE_ROWS:
        f_t, f_n = stages["first"][label]
        u_t, u_n = stages["unchanged"][label]
        print(
            f"  {'  ' * depth}{label:<{52 - 2 * depth}} {f_t * 1000:>8.1f} ms {f_t / base:>5.0%} {int(f_n):>5}x"
            f"  | {u_t * 1000:>8.1f} ms {int(u_n):>5}x"
        )

    print(
        f"\nHot spots, warm, best of {len(spots['json.loads'])}: nbformat.reads of the notebook "
        f"{fmt_ms(min(spots['nbformat.reads']))} vs json.loads {fmt_ms(min(spots['json.loads']))}; "
        f"importlib.metadata.packages_distributions() {fmt_ms(min(spots['packages_distributions']))} "
        f"({int(spots['distributions'][0])} distributions installed; called once per export, not cached)"
    )

    print(
        f"\ncProfile of one export (profiled total {profile['total_s']:.2f} s; the profiler slows "
        "Python-heavy code ~2x):"
    )
    print(
        "  own time by package: "
        + ", ".join(f"{p['package']} {p['tottime_s'] * 1000:.0f} ms" for p in profile["own_time_by_package"])
    )
    print(f"  {'top functions by own time':<78} {'calls':>7} {'own':>8} {'cum':>8}")
    for r in profile["top_own"]:
        print(f"  {r['function'][:78]:<78} {r['calls']:>7} {r['tottime_s']:>8.3f} {r['cumtime_s']:>8.3f}")
    print(f"  {'nbops functions by cumulative time':<78} {'calls':>7} {'own':>8} {'cum':>8}")
    for r in profile["top_cumulative_nbops"]:
        print(f"  {r['function'][:78]:<78} {r['calls']:>7} {r['tottime_s']:>8.3f} {r['cumtime_s']:>8.3f}")

    misses = [f.key for f in figures if f.ok is False]
    if generated["compile_errors"]:
        misses.append("compile")
    print(f"\n{'ALL TARGETS MET' if not misses else 'MISSED: ' + ', '.join(misses)}")

    if args.json:
        doc = {
            "env": env,
            "notebook": nb_info,
            "figures": [asdict(f) for f in figures],
            "rounds": [asdict(r) for r in rounds],
            "imports": imports,
            "sizes": sizes,
            "generated": generated,
            "stages": stages,
            "hot_spots": spots,
            "profile": profile,
            "misses": misses,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 1 if (args.strict and misses) else 0
