"""``%export``: export this notebook into pipeline modules."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbops.magics._args import usage_errors
from nbops.magics.session import SessionMagics
from nbops.syntax import parse_line


@magics_class
class ExportMagics(SessionMagics):
    """``%export``, on the kernel's store."""

    @no_var_expand
    @magic_arguments()
    @argument("notebook", nargs="?", help="the notebook to export (default: this one, when JupyterLab says which)")
    @argument("-o", "--out", default="pipelines", help="output folder; files go to OUT/<stem>/")
    @argument("--verify", action="store_true", help="run the modules on a scratch store and compare with the notebook")
    @argument("--target", choices=["airflow"], help="also write an Airflow 3 DAG")
    @argument("--latest", action="store_true", help="later stages read the latest version of what earlier ones stored")
    @line_magic
    def export(self, line: str) -> Any:
        """Export this notebook into feature, training and inference pipeline modules.

        Writes ``OUT/<stem>/feature_pipeline.py``, ``training_pipeline.py``,
        ``inference_pipeline.py`` (the stages the notebook has),
        ``manifest.json`` and ``test_pipelines.py``.  Save the notebook first:
        the export reads the file, never the kernel's state.
        """
        from nbops.exporting import ExportError, export

        args = parse_line(self.export, line)
        notebook = args.notebook or self.session.notebook_path()
        if not notebook:
            raise UsageError("this kernel does not know its notebook's path; pass it: %export path/to/notebook.ipynb")
        with usage_errors():
            try:
                result = export(
                    notebook,
                    out=args.out,
                    store=self.session.store,
                    target=args.target,
                    verify=args.verify,
                    latest=args.latest,
                )
            except ExportError as exc:
                raise UsageError(f"cannot export: {exc}") from None
        print(result.summary())
        verification = getattr(result, "verification", None)
        if verification is not None:
            print(verification.text())
        return None
