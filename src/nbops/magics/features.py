"""``%%features``: register a cell's feature frame; ``%features`` and ``%drift`` show the catalog."""

from __future__ import annotations

import ast
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbops import syntax
from nbops.magics._args import shell_of, usage_errors
from nbops.magics.session import SessionMagics
from nbops.syntax import parse_line


def run_for_last_value(shell: Any, cell: str) -> Any:
    """Run a cell in the user namespace and return its last expression's value.

    The statements before the last expression run as a normal cell (magics
    inside the cell work, errors show as usual); the last expression is
    evaluated, not displayed.
    """
    source = shell.transform_cell(cell)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UsageError(f"the cell does not parse: {exc}") from None
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        raise UsageError("the last line of a %%features cell must be the feature DataFrame, e.g. `features`")
    last = tree.body[-1]
    lines = source.splitlines(keepends=True)
    head = "".join(lines[: last.lineno - 1]) + lines[last.lineno - 1][: last.col_offset]
    if head.strip():
        result = shell.run_cell(head, store_history=False)
        if not result.success:
            raise UsageError("the cell raised an error (shown above); nothing was registered")
    expression = ast.Expression(last.value)
    code = compile(expression, "<%%features cell>", "eval")
    return eval(code, shell.user_ns)


@magics_class
class FeatureMagics(SessionMagics):
    """``%%features``, ``%features`` and ``%drift``, on the kernel's store."""

    @no_var_expand
    @syntax.declare("features")
    @line_cell_magic
    def features(self, line: str, cell: str | None = None) -> Any:
        """Register the cell's last expression as a commit of a feature group.

        ``%%features tx_features --keys cc_num --event-time ts [--online]``
        runs the cell; its last expression must be the feature DataFrame.
        Shows group, version, commit, rows, the validation result and a
        statistics preview.  Without a cell body, ``%features [GROUP]`` is a
        panel of the catalog: groups, versions, commits, statistics with
        histograms, expectations and lineage, with a search box.
        ``%features [GROUP] --table`` returns the catalog as a DataFrame
        instead (every group version, or one group's commits).
        """
        args = parse_line(self.features, line)
        store = self.session.store
        if cell is None:
            if not args.table:
                from nbops.magics.panels import open_panel
                from nbops.widgets.features import FeaturesPanel

                return open_panel(lambda: FeaturesPanel(store, args.group))
            with usage_errors():
                if args.group:
                    return store.feature_commits(args.group, args.version)
                return store.feature_groups()
        if not args.group or not args.keys or not args.event_time:
            raise UsageError("usage: %%features GROUP --keys K[,K] --event-time COL [--online] [--version V]")
        frame = run_for_last_value(self.shell, cell)
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        with usage_errors():
            return store.register_features(
                frame,
                args.group,
                keys=keys,
                event_time=args.event_time,
                description=args.description,
                online=True if args.online else None,
                version=args.version,
            )

    @no_var_expand
    @magic_arguments()
    @argument("group", help="feature group, e.g. tx_features or tx_features:2")
    @argument("a", nargs="?", help="reference side: a commit number, GROUP:V[@C], or a DataFrame variable")
    @argument("b", nargs="?", help="current side: a commit number, GROUP:V[@C], or a DataFrame variable")
    @argument("--table", action="store_true", help="return the report as a DataFrame, not a panel")
    @line_magic
    def drift(self, line: str) -> Any:
        """A panel of PSI and KS per feature between two commits or versions of a group.

        ``%drift tx_features`` compares the last two commits; ``%drift
        tx_features 3 4`` commits 3 and 4; ``%drift tx_features tx:1 tx:2``
        two versions; ``%drift tx_features df`` a DataFrame variable against
        the latest commit.  Drifting features come first; pick one to see
        both distributions over each other.  ``--table`` returns the report
        as a DataFrame instead.
        """
        args = parse_line(self.drift, line)
        sides = [self._side(v) for v in (args.a, args.b)]
        if not args.table:
            from nbops.magics.panels import open_panel
            from nbops.widgets.drift import DriftPanel

            return open_panel(lambda: DriftPanel(self.session.store, args.group, sides[0], sides[1]))
        with usage_errors():
            return self.session.store.drift(args.group, sides[0], sides[1])

    def _side(self, value: str | None) -> Any:
        if value is None:
            return None
        if value.isdigit():
            return int(value)
        if value.isidentifier() and value in shell_of(self).user_ns:
            return shell_of(self).user_ns[value]
        return value
