"""``nbops demo``: execute the quickstart notebook headless on a fresh store.

The notebook runs in a real Jupyter kernel of this environment (nbclient),
with ``NBOPS_HOME`` pointing at a new store inside the work folder; the
executed notebook is saved beside it, and a summary of what it made is printed.
This is the command's body, so it prints (to stdout) rather than logs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

NOTEBOOK = "quickstart.ipynb"


def quickstart_path() -> Path:
    """The quickstart notebook: packaged in the wheel, or ``notebooks/`` of a source checkout."""
    packaged = Path(__file__).resolve().parents[1] / "_notebooks" / NOTEBOOK  # nbops/_notebooks in the wheel
    if packaged.exists():
        return packaged
    source = Path(__file__).resolve().parents[3] / "notebooks" / NOTEBOOK
    if source.exists():
        return source
    raise FileNotFoundError(f"the quickstart notebook is missing: looked for {packaged} and {source}")


def run_demo(directory: str | os.PathLike[str] | None = None, timeout: int = 600) -> int:
    """Execute the quickstart notebook on a store in ``directory`` (default: a new temporary folder); return 0.

    The store there is used if it exists (the demo adds versions to it); what the
    notebook made is printed.  A cell that fails raises nbclient's error.
    """
    import nbformat
    from nbclient import NotebookClient

    work = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="nbops-demo-"))
    work = work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    store_root = work / ".nbops"
    if (store_root / "catalog.db").exists():
        print(f"nbops demo: {work} already holds a store; using it (the demo adds new versions)")
    print(f"nbops demo: running {NOTEBOOK} in {work}")

    nb = nbformat.read(quickstart_path(), as_version=4)  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    # The kernel inherits these: the demo's own embedded store, whatever a
    # team set-up in this environment says.
    demo_env = {"NBOPS_HOME": str(store_root), "NBOPS_CATALOG_URL": "embedded", "NBOPS_ONLINE_URL": "embedded"}
    previous = {name: os.environ.get(name) for name in demo_env}
    os.environ.update(demo_env)
    try:
        NotebookClient(
            nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(work)}}
        ).execute()
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    out = work / NOTEBOOK
    nbformat.write(nb, out)  # type: ignore[no-untyped-call]
    elapsed = time.perf_counter() - started

    from nbops.store import open as open_store

    with open_store(store_root, catalog="embedded") as store:
        info = store.summary()
        datasets = store.datasets()
        groups = store.feature_groups()
    print(f"executed in {elapsed:.1f} s; the executed notebook is {out}")
    print(
        f"store {info['root']}: {info['datasets']} datasets ({info['snapshot_versions']} versions), "
        f"{info['feature_groups']} feature groups ({info['feature_commits']} commits), "
        f"{info['objects']} objects ({info['bytes']:,} bytes)"
    )
    if len(datasets):
        print(
            "\ndatasets:\n"
            + datasets[["name", "versions", "latest", "rows", "columns", "digest"]].to_string(index=False)
        )
    if len(groups):
        print(
            "\nfeature groups:\n"
            + groups[["group", "version", "keys", "features", "commits", "rows", "online"]].to_string(index=False)
        )
    print(f"look around: NBOPS_HOME={store_root} nbops ls")
    return 0
