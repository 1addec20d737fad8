"""``%snapshot``: store a DataFrame as a dataset version, or load one back."""

from __future__ import annotations

import dataclasses
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from traitlets import Bool

from nbops import syntax
from nbops.magics._args import lookup, shell_of, usage_errors, variable_name
from nbops.magics.session import SessionMagics
from nbops.syntax import parse_line


@magics_class
class SnapshotMagics(SessionMagics):
    """Dataset snapshots from a notebook.

    Settings (``%config SnapshotMagics`` or ``ipython_config.py``)::

        c.SnapshotMagics.show_changes = False   # skip the diff against the previous version
    """

    show_changes = Bool(
        True,
        help="After %snapshot, compare the new version with the previous one and show a one-line summary.",
    ).tag(config=True)

    @no_var_expand
    @syntax.declare("snapshot")
    @line_magic
    def snapshot(self, line: str) -> Any:
        """Snapshot a DataFrame into the store, or load a stored version.

        ``%snapshot df`` stores ``df`` as the next version of dataset ``df``
        and shows its version, short digest, rows, and what changed since the
        previous version.  Content equal to the latest version writes nothing.
        ``%snapshot --load raw_tx@2 --as old`` puts version 2 in ``old``.
        """
        args = parse_line(self.snapshot, line)
        if args.load:
            if args.dataframe or args.name or args.message:
                raise UsageError("%snapshot --load NAME[@V] [--as VAR] takes no DataFrame, --name or -m")
            return self._load(args.load, args.as_var)
        if args.as_var:
            raise UsageError("--as only goes with --load, e.g. %snapshot --load raw_tx@2 --as old")
        if not args.dataframe:
            raise UsageError("name the DataFrame to snapshot, e.g. %snapshot df --name raw_tx")
        frame = lookup(self.shell, args.dataframe)
        name = args.name or args.dataframe
        store = self.session.store
        with usage_errors():
            ref = store.snapshot(frame, name, message=args.message)
            if self.show_changes:
                ref = dataclasses.replace(ref, changes=self._changes(ref, args.keys))
        return ref

    def _changes(self, ref: Any, keys: str | None) -> str | None:
        if not ref.new:
            return None  # the ref already says it is unchanged
        if ref.version == 1:
            return "first version"
        key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
        return str(self.session.store.diff(ref.name, ref.version - 1, ref.version, keys=key_list).summary())

    def _load(self, ref_text: str, as_var: str | None) -> None:
        from nbops.core.refs import parse_ref

        with usage_errors():
            name, _ = parse_ref(ref_text)
            target = variable_name(as_var or name, "--as")
            ref = self.session.store.ref(ref_text)
            frame = self.session.store.load(ref_text)
        shell_of(self).user_ns[target] = frame
        print(
            f"loaded {ref.ref} into {target}: {ref.rows:,} rows x {len(ref.columns)} columns, digest {ref.short_digest}"
        )
