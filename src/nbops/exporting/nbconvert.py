"""``jupyter nbconvert --to nbops NB.ipynb``: the export as an nbconvert exporter.

The :class:`StagePreprocessor` decides each cell's stage (its settings are
traitlets, so ``--StagePreprocessor.default_stage=feature`` works); the
:class:`NbopsExporter` turns the notebook into the pipeline files, returned as
the manifest (the main output) plus ``resources["outputs"]`` for the modules,
which nbconvert's writer puts in ``<build dir>/<stem>/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nbconvert.exporters import Exporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode, default

from nbops.errors import ExportError
from nbops.exporting.cells import STAGES


class StagePreprocessor(Preprocessor):
    """Tag cells with a stage where the notebook leaves it to a setting."""

    default_stage = Unicode(
        "",
        help="Stage for cells with no tag, comment or magic that says one "
        "(feature, training, inference or skip); empty: decide by dependencies.",
    ).tag(config=True)

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        """Tag a code cell with ``default_stage`` when nothing in it says a stage; ValueError for an unknown stage."""
        if cell.cell_type == "code" and self.default_stage:
            if self.default_stage not in (*STAGES, "skip"):
                raise ValueError(
                    f"default_stage must be feature, training, inference or skip, not {self.default_stage!r}"
                )
            tags = list(cell.metadata.get("tags", []))
            if not any(t in (*STAGES, "skip", "parameters") for t in tags) and not cell.source.lstrip().startswith(
                ("%%features", "%%track", "# nbops:")
            ):
                cell.metadata["tags"] = [*tags, self.default_stage]
        return cell, resources


class NbopsExporter(Exporter):
    """Export a notebook into feature, training and inference pipeline modules."""

    export_from_notebook = "nbops pipelines"
    output_mimetype = "application/json"

    target = Unicode("", help="Also write an orchestrator file: 'airflow' for an Airflow DAG.").tag(config=True)

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".manifest.json"

    @property
    def default_config(self) -> Any:
        """nbconvert's defaults with :class:`StagePreprocessor` enabled."""
        from traitlets.config import Config

        config = Config({"StagePreprocessor": {"enabled": True}})
        config.merge(super().default_config)
        return config

    @default("preprocessors")
    def _preprocessors_default(self) -> list[Any]:
        return [StagePreprocessor]

    # Text out, as nbconvert's own text exporters (HTMLExporter) do: its base class types the result as a notebook.
    def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> tuple[str, Any]:  # type: ignore[override]
        """Export ``nb``: the manifest as JSON text, and the modules in ``resources["outputs"]``.

        An :class:`ExportError` when the notebook cannot be exported (its message names the cell).
        """
        import nbformat

        from nbops.exporting import plan

        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        name = str((resources.get("metadata") or {}).get("name") or "notebook")
        if Path(name).name != name or name in (".", ".."):
            raise ExportError(f"the notebook name {name!r} is not a file name")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.ipynb"
            nbformat.write(nb_copy, path)  # type: ignore[no-untyped-call]
            p = plan(path, target=self.target or None)
        outputs = resources.setdefault("outputs", {})
        files = p.files_at(0)  # nbconvert does not record versions; `nbops export` does
        manifest = files.pop("manifest.json")
        for filename, content in files.items():
            outputs[f"{p.stem}/{filename}"] = content.encode()
        return manifest, resources
