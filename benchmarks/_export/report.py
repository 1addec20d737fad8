"""Reporting the export benchmark: its figures, and the git state, load and sources digest in the header."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass

from _export import HERE


@dataclass
class Figure:
    key: str
    label: str
    value: str
    rounds: str = ""
    target: str = "-"
    ok: bool | None = None
    seconds: float | None = None


def fmt_ms(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def fmt_rounds(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def print_figures(figures: list[Figure]) -> None:
    head = f"{'#':<4} {'figure':<62} {'value':>12} {'target':>8}  {'result':<6} rounds (s)"
    print(head)
    print("-" * len(head))
    for f in figures:
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(f"{f.key:<4} {f.label:<62} {f.value:>12} {f.target:>8}  {result:<6} {f.rounds}")


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return head + ("+dirty" if dirty else "")


def loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((HERE.parent / "src" / "nbops" / "exporting").glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]
