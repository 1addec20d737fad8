"""``%%track``: run a cell inside an MLflow run; ``%track start`` / ``%track stop`` span cells."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class, no_var_expand

from nbops import syntax
from nbops.magics._args import shell_of, usage_errors
from nbops.magics.session import KernelSession, SessionMagics
from nbops.syntax import parse_line


@magics_class
class TrackingMagics(SessionMagics):
    """``%%track`` and ``%track start|stop``, on the kernel's store."""

    def __init__(self, shell: Any, session: KernelSession) -> None:
        super().__init__(shell, session)
        self.run: Any = None  # the run %track start opened

    @no_var_expand
    @syntax.declare("track")
    @line_cell_magic
    def track(self, line: str, cell: str | None = None) -> Any:
        """Run the cell inside an MLflow run that records the data it reads and writes.

        ``%%track --experiment fraud --run-name rf`` runs the cell in a run:
        FINISHED when it succeeds, FAILED when it raises (the error shows as
        usual), KILLED when interrupted.  Your own ``mlflow.log_*`` calls land
        in that run; ``nbops.log(auc=...)`` buffers metrics and writes them
        at the end.  The cell's source is stored as an artifact, and every
        snapshot and feature group it reads or writes as a dataset input, as
        well as the data that frames the cell uses were read from, even in an
        earlier cell (``train = store.training_data(...)`` before, ``model.fit(
        train.drop(columns="label"), train["label"])`` here).
        ``%track start [...]`` and ``%track stop`` do the same across cells.
        """
        args = parse_line(self.track, line)
        if cell is not None:
            if args.verb:
                raise UsageError("%%track takes no start/stop; use %track start / %track stop on a line")
            return self._run_cell(args, cell)
        if args.verb == "start":
            return self._start(args, source=None)
        if args.verb == "stop":
            return self._stop()
        raise UsageError("use %%track on a cell, or %track start [--experiment E] / %track stop")

    def _experiment(self, args: Any) -> str:
        if args.experiment:
            return str(args.experiment)
        path = self.session.notebook_path()
        if path:
            from pathlib import Path

            from nbops.core.names import experiment_name_from

            return experiment_name_from(Path(path).stem)
        return "Default"

    def _start(self, args: Any, source: str | None) -> Any:
        from nbops.tracking import experiments as tracking

        if self.run is not None:
            raise UsageError(f"run {self.run.run_id} is still open; %track stop it first")
        with usage_errors():
            run = tracking.start_run(
                self.session.store,
                experiment=self._experiment(args),
                run_name=args.run_name,
                register_model=args.register_model,
                autolog=args.autolog,
                source=source,
            )
        if source is None:
            self.run = run
            print(f"run {run.run_id} ({run.name}) started in experiment {run.experiment!r}; %track stop ends it")
        return run

    def _stop(self, status: str = "FINISHED") -> Any:
        from nbops.tracking import experiments as tracking

        if self.run is None:
            raise UsageError("no run was started with %track start")
        run, self.run = self.run, None
        with usage_errors():
            tracking.end_run(run, status)
        print(f"run {run.run_id} ({run.name}) {run.status}")
        return None

    def _names(self, cell: str) -> list[str]:
        """The names the cell uses (none if it does not parse: running it shows the error)."""
        import ast

        from nbops.tracking.experiments import names_used

        try:
            return names_used(ast.parse(shell_of(self).transform_cell(cell)))
        except (SyntaxError, ValueError):
            return []

    def _note(self, run: Any, names: list[str], before: bool) -> None:
        """Record the provenance of the frames the cell uses (best effort: never fails the cell)."""
        from nbops.tracking import experiments as tracking

        try:
            tracking.note_names(run, names, shell_of(self).user_ns, before)
        except Exception as exc:
            print(f"nbops: could not read which data the cell uses: {exc!r}")

    def _run_cell(self, args: Any, cell: str) -> Any:
        from nbops.tracking import experiments as tracking

        # The result of the cell that holds this magic: a failing body must
        # fail it too, so that the front end (Run All, nbclient) stops there.
        outer = getattr(shell_of(self).displayhook, "exec_result", None)
        names = self._names(cell)
        run = self._start(args, source=cell)
        self._note(run, names, before=True)
        status = "FINISHED"
        error: BaseException | None = None
        try:
            result = shell_of(self).run_cell(cell, store_history=False)
            error = result.error_before_exec or result.error_in_exec
            if isinstance(error, KeyboardInterrupt):
                status = "KILLED"
            elif error is not None:
                status = "FAILED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._note(run, names, before=False)
            with usage_errors():
                tracking.end_run(run, status)
        print(f"run {run.run_id} ({run.name}) {run.status} in experiment {run.experiment!r}")
        disk = tracking.state_write_error(run, error) if error is not None else None
        if disk is not None:  # the disk refused the run's own state: say so in one line
            raise UsageError(str(disk.with_outcome(f"run {run.run_id} ended {run.status}")))
        if error is not None and outer is not None:
            outer.error_in_exec = error  # shown once already, by the inner run
        return None
