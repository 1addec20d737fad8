"""Griffe extension for the API reference: nbops's reST-ish docstrings as Markdown.

The docstrings are free-form reST (``literal``, :func:`x` roles, ``::`` before a
literal block, ``>>>`` examples), rendered by mkdocstrings with
``docstring_style: null`` (no section parsing).  Before rendering, this
extension rewrites, outside code blocks:

- a role, ``:func:`name``` (also :class:, :meth:, :mod:, :attr:, :data:,
  :exc:, :obj:, :const:), into an optional cross-reference: a link when
  ``name`` resolves, in the object's scope, to something the reference
  documents; otherwise plain ``name`` in code (never a build warning).
  ``~a.b.c`` shows ``c``; a leading ``.`` is relative to the module;
- a paragraph ending in ``::`` into one ending in ``:``;
- an unindented ``>>>`` example into a fenced ``pycon`` code block.

Role targets that name nothing in nbops are listed with ``mkdocs build --verbose``
(logger ``mkdocs.plugins.nbops_reference``); they never fail the build.
Loaded by ``mkdocs.yml`` (``extensions:``); not part of the site (``exclude_docs``).
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import griffe

_log = logging.getLogger("mkdocs.plugins.nbops_reference")

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj|const):`([^`]+)`")
_FENCE = re.compile(r"^\s*(```|~~~)")


class RestDocstrings(griffe.Extension):
    """Rewrite the docstrings of the package ``nbops`` once it is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.unresolved: dict[str, set[str]] = {}

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != "nbops":
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj.docstring.value, obj, loader)
        if self.unresolved:
            _log.info("%d docstring role target(s) name nothing in nbops; --verbose lists them", len(self.unresolved))
            for target, where in sorted(self.unresolved.items()):
                _log.debug("unresolved role target %r in %s", target, ", ".join(sorted(where)))

    def _rewrite(self, text: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
        out: list[str] = []
        lines = text.split("\n")
        in_fence = False
        in_example = False
        previous_blank = True
        for i, line in enumerate(lines):
            if _FENCE.match(line):
                in_fence = not in_fence
                out.append(line)
                continue
            if in_fence:
                out.append(line)
                continue
            if in_example:
                if line.strip():
                    out.append(line)
                    continue
                out.append("```")
                in_example = False
            indented_code = line.startswith("    ") and (previous_blank or (out and out[-1].startswith("    ")))
            if line.startswith(">>>") and not indented_code:
                if not previous_blank:
                    out.append("")
                out.append("```pycon")
                out.append(line)
                in_example = True
                previous_blank = False
                continue
            if not indented_code:
                line = _ROLE.sub(lambda m: self._reference(m.group(1), m.group(2), obj, loader), line)
                following = lines[i + 1] if i + 1 < len(lines) else ""
                if line.rstrip().endswith("::") and not following.strip():
                    stripped = line.rstrip()[:-2].rstrip()
                    line = stripped + ":" if stripped else ""
            out.append(line)
            previous_blank = not line.strip()
        if in_example:
            out.append("```")
        return "\n".join(out)

    def _reference(self, role: str, target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
        target = target.strip()
        short = target.startswith("~")
        name = target.lstrip("~").removesuffix("()")
        title = name.rsplit(".", 1)[-1] if short else name.lstrip(".")
        if role in ("func", "meth"):
            title += "()"
        path = _resolve(name, obj, loader)
        code = f"<code>{html.escape(title)}</code>"
        if path is None:
            if name.startswith(("nbops.", ".")) or "." not in name:
                self.unresolved.setdefault(name, set()).add(obj.path)
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _exists(path: str, loader: griffe.GriffeLoader) -> bool:
    try:
        loader.modules_collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _resolve(name: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str | None:
    """The full path ``name`` means in ``obj``'s docstring, if it names an object Griffe loaded."""
    if name.startswith("."):
        scope: griffe.Object | None = obj.module
        while scope is not None:
            if _exists(scope.path + name, loader):
                return scope.path + name
            scope = scope.parent
        return None
    if _exists(name, loader):
        return name
    first, _, rest = name.partition(".")
    scope = obj
    while scope is not None:
        try:
            base = scope.resolve(first)
        except griffe.NameResolutionError:
            base = None
        if base is not None:
            path = f"{base}.{rest}" if rest else base
            if _exists(path, loader):
                return path
        scope = scope.parent
    return None
