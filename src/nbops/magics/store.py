"""``%nbops``: where the store is and what it holds; ``%nbops use PATH`` switches."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.utils.process import arg_split  # type: ignore[attr-defined]  # public, not in its __all__

from nbops.magics._args import usage_errors
from nbops.magics.session import KernelSession, SessionMagics


def _parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="%nbops", description="Show the store this kernel uses, or switch to another one."
    )
    verbs = parser.add_subparsers(dest="verb")
    use = verbs.add_parser("use", help="work on the store at PATH from now on (created if missing)")
    use.add_argument("path", help="the store folder, e.g. ../shared/.nbops")
    verbs.add_parser("info", help="where the store is and what it holds (the default)")
    return parser


@magics_class
class StoreMagics(SessionMagics):
    """``%nbops``: show the kernel's store, or switch it with ``%nbops use PATH``."""

    def __init__(self, shell: Any, session: KernelSession) -> None:
        super().__init__(shell, session)
        self.parser = _parser()

    @no_var_expand
    @line_magic
    def nbops(self, line: str) -> None:
        """Show the store this kernel uses; ``%nbops use PATH`` switches to another.

        The store is found as git finds ``.git``: ``$NBOPS_HOME``, else the
        nearest ``.nbops/`` folder upward from the working directory, else a
        new ``.nbops/`` here.
        """
        try:
            args = self.parser.parse_args(arg_split(line, posix=True))
        except SystemExit:  # --help printed
            return
        with usage_errors():
            if args.verb == "use":
                store = self.session.use(args.path)
                print(f"nbops now uses the store at {store.root}")
                return
            info = self.session.store.summary()
        print(
            f"nbops store: {info['root']}\n"
            f"  catalog:   {info['catalog']}\n"
            f"  datasets:  {info['datasets']} ({info['snapshot_versions']} snapshot versions)\n"
            f"  features:  {info['feature_groups']} groups ({info['feature_commits']} commits)\n"
            f"  objects:   {info['objects']} ({info['bytes']:,} bytes)"
        )
