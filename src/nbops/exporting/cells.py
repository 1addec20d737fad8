"""Which cell goes to which stage, and which cells each stage needs.

A cell's stage comes from, in this order: its tags (``feature``,
``training``, ``inference``, ``skip``; ``parameters`` marks the parameters
cell), a first-line comment ``# nbops: <stage>``, or the nbops magic it uses
(``%%features`` -> feature, ``%%track`` -> training).  Other cells are
*support* cells: a stage includes those it depends on — imports, helper
functions, constants — found by static analysis of the names each cell
defines and uses, in notebook order.  Statements are never reordered.

The analysis also reports hidden state: a name used before any earlier cell
defines it, a name defined only by a skipped cell or by another stage's cell,
and execution counts that are out of notebook order.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbops.errors import NbopsError

STAGES = ("feature", "training", "inference")
_MARKER = re.compile(r"^\s*#\s*nbops\s*:\s*(\w+)\s*$", re.IGNORECASE)
_BUILTINS = set(dir(builtins)) | {"get_ipython", "display", "__name__", "__file__"}
#: Names every generated module provides.
PROVIDED = {"nbops", "nbops_store"}


class ExportError(NbopsError):
    """The notebook cannot be exported as it is; the message names the cell."""


@dataclass
class Cell:
    index: int  # position among all cells, from 0
    id: str
    source: str  # the original source
    tags: tuple[str, ...]
    execution_count: int | None
    stage: str | None = None  # feature / training / inference / skip / parameters / None (support)
    stage_reason: str = ""
    code: str = ""  # translated Python (magics handled)
    defines: set[str] = field(default_factory=set)
    uses_now: set[str] = field(default_factory=set)  # used when the cell runs
    uses_later: set[str] = field(default_factory=set)  # used inside function bodies (late-bound)

    @property
    def label(self) -> str:
        return f"cell {self.index + 1} (id {self.id})"


def assign_stage(cell: Cell) -> None:
    for tag in cell.tags:
        if tag in (*STAGES, "skip", "parameters"):
            cell.stage, cell.stage_reason = tag, f"tag {tag!r}"
            return
    lines = [line for line in cell.source.splitlines() if line.strip()]
    if lines:
        m = _MARKER.match(lines[0])
        if m:
            stage = m.group(1).lower()
            if stage not in (*STAGES, "skip"):
                raise ExportError(
                    f"{cell.label}: '# nbops: {m.group(1)}' names no stage; use feature, training, inference or skip"
                )
            cell.stage, cell.stage_reason = stage, "first-line comment"
            return
        first = lines[0].lstrip()
        if first.startswith("%%features"):
            cell.stage, cell.stage_reason = "feature", "magic %%features"
        elif first.startswith("%%track"):
            cell.stage, cell.stage_reason = "training", "magic %%track"


# -- names -------------------------------------------------------------------------
class _Names(ast.NodeVisitor):
    """Top-level definitions, names used when the cell runs, and names used in function bodies."""

    def __init__(self) -> None:
        self.defines: set[str] = set()
        self.uses_now: set[str] = set()
        self.uses_later: set[str] = set()
        self._depth = 0  # > 0 inside a function or lambda body
        self._local: list[set[str]] = []

    def _use(self, name: str) -> None:
        if self._depth:
            if not any(name in scope for scope in self._local):
                self.uses_later.add(name)
        elif name not in self.defines:
            self.uses_now.add(name)

    def _bind(self, name: str) -> None:
        if self._depth:
            self._local[-1].add(name)
        else:
            self.defines.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._use(node.id)
        else:
            self._bind(node.id)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            self._bind(node.name)
        args = node.args
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        self._depth += 1
        self._local.append(params | _assigned_in(node))
        body = node.body if isinstance(node.body, list) else [node.body]
        for stmt in body:
            self.visit(stmt)
        self._local.pop()
        self._depth -= 1

    visit_FunctionDef = _function  # type: ignore[assignment]
    visit_AsyncFunctionDef = _function  # type: ignore[assignment]
    visit_Lambda = _function  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.bases, *node.decorator_list, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._bind(node.name)
        self._depth += 1
        self._local.append(_assigned_in(node))
        for stmt in node.body:
            self.visit(stmt)
        self._local.pop()
        self._depth -= 1

    def _comprehension(self, node: Any) -> None:
        targets: set[str] = set()
        for gen in node.generators:
            targets |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
        self._local.append(targets)
        depth = self._depth
        for gen in node.generators:
            self.visit(gen.iter)
            for cond in gen.ifs:
                self._depth = max(self._depth, 0)
                self.visit(cond)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                self._visit_in_scope(getattr(node, part))
        self._depth = depth
        self._local.pop()

    def _visit_in_scope(self, node: ast.AST) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                if not any(n.id in scope for scope in self._local):
                    (self.uses_later if self._depth else self.uses_now).add(n.id)

    visit_ListComp = _comprehension  # type: ignore[assignment]
    visit_SetComp = _comprehension  # type: ignore[assignment]
    visit_DictComp = _comprehension  # type: ignore[assignment]
    visit_GeneratorExp = _comprehension  # type: ignore[assignment]


def _assigned_in(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in n.names if a.name != "*"}
    return names


def analyse(cell: Cell, tree: ast.Module) -> None:
    names = _Names()
    for stmt in tree.body:
        names.visit(stmt)
    cell.defines = names.defines
    cell.uses_now = names.uses_now - _BUILTINS
    cell.uses_later = names.uses_later - _BUILTINS - names.defines


# -- selection -----------------------------------------------------------------------
@dataclass
class Finding:
    kind: str  # "used-before-defined", "defined-in-skipped-cell", "defined-in-other-stage", "execution-order", "undefined"
    cell: str
    name: str | None
    message: str


def select(cells: Sequence[Cell], stage: str, parameters: Iterable[str]) -> tuple[list[Cell], list[Finding]]:
    """The cells of ``stage`` plus the support cells they need, in notebook order."""
    provided = set(parameters) | PROVIDED
    chosen = {c.index for c in cells if c.stage == stage}
    findings: list[Finding] = []
    deferred: list[tuple[Cell, str, Cell]] = []  # (cell with a function, name, later cell defining it)
    todo = [c for c in cells if c.index in chosen]
    while todo:
        cell = todo.pop()
        for name, late in [(n, False) for n in sorted(cell.uses_now)] + [(n, True) for n in sorted(cell.uses_later)]:
            if name in provided:
                continue
            definer = _definer(cells, cell, name, stage, chosen, late)
            if isinstance(definer, Finding):
                if definer not in findings:
                    findings.append(definer)
                continue
            if definer is not None and late and definer.index > cell.index:
                deferred.append((cell, name, definer))
            if definer is not None and definer.index not in chosen:
                chosen.add(definer.index)
                todo.append(definer)
    by_index = {c.index: c for c in cells}
    for holder, name, definer in deferred:
        # A function that needs a later cell's name, called before that cell runs.
        for index in sorted(chosen):
            caller = by_index[index]
            if holder.index < index < definer.index and caller.uses_now & holder.defines:
                finding = Finding(
                    "used-before-defined",
                    caller.label,
                    name,
                    f"{caller.label} calls code from {holder.label} that needs {name!r}, which only "
                    f"{definer.label} further down defines; move the definition up",
                )
                if finding not in findings:
                    findings.append(finding)
                break
    return [c for c in cells if c.index in chosen], findings


def _definer(
    cells: Sequence[Cell], user: Cell, name: str, stage: str, chosen: set[int], late: bool
) -> Cell | Finding | None:
    before = [c for c in cells if c.index < user.index and name in c.defines]
    if user.index in chosen and name in user.defines and late:
        return None  # a function of this cell calling another function of this cell
    usable = [c for c in before if c.stage in (None, stage)]
    if usable:
        return usable[-1]
    if late:
        later = [c for c in cells if c.index > user.index and name in c.defines and c.stage in (None, stage)]
        if later:
            return later[0]  # a function body may call a helper defined further down
    others = [c for c in before if c.stage not in (None, stage)]
    if others:
        other = others[-1]
        if other.stage == "skip":
            return Finding(
                "defined-in-skipped-cell",
                user.label,
                name,
                f"{user.label} uses {name!r}, which only {other.label} defines, and that cell is skipped",
            )
        if other.stage == "parameters":
            return None
        return Finding(
            "defined-in-other-stage",
            user.label,
            name,
            f"{user.label} ({stage}) uses {name!r}, defined by {other.label} of the {other.stage} stage; "
            "stages share data through the store (e.g. store.load / store.features), not variables",
        )
    later = [c for c in cells if c.index > user.index and name in c.defines]
    if later:
        return Finding(
            "used-before-defined",
            user.label,
            name,
            f"{user.label} uses {name!r} before {later[0].label} defines it; move the definition up",
        )
    return Finding("undefined", user.label, name, f"{user.label} uses {name!r}, which no cell defines")


def execution_order_findings(cells: Sequence[Cell]) -> list[Finding]:
    findings = []
    last: tuple[int, Cell] | None = None
    for cell in cells:
        if cell.execution_count is None:
            continue
        if last is not None and cell.execution_count < last[0]:
            findings.append(
                Finding(
                    "execution-order",
                    cell.label,
                    None,
                    f"{cell.label} ran (In [{cell.execution_count}]) before {last[1].label} (In [{last[0]}]) "
                    "above it: the notebook's state may not match its order",
                )
            )
        last = (cell.execution_count, cell)
    return findings
