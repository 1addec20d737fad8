"""What every benchmark here measures the same way: peak memory, machine load, the code timed.

Peak memory on Linux: the kernel's high-water mark (``VmHWM``) is reset
through ``/proc/self/clear_refs`` before each operation, so each one gets its
own peak; the process peak is the largest mark seen before any reset
(resetting also hides it from ``ru_maxrss``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_process_peak_kib = 0  # max VmHWM seen before any reset


def status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM), remembering the old one for the process peak."""
    global _process_peak_kib
    _process_peak_kib = max(_process_peak_kib, status_kib("VmHWM") or 0)
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Return freed memory to the OS so that RSS at the start of an operation is not inflated."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def ru_maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def process_peak_bytes() -> int:
    """Peak RSS of the whole run: ru_maxrss, and the VmHWM marks seen before each reset."""
    reset_peak()  # folds the current mark into the process peak
    return max(ru_maxrss_bytes(), _process_peak_kib * 1024)


def git_state() -> str:
    """The commit of the checkout this file is in, with "+dirty" when src/ has local changes."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=here,
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


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError
