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
from typing import Any, TypeGuard

from nbops.errors import ExportError

STAGES = ("feature", "training", "inference")
#: A stage marker: ``# nbops: training`` or ``# nbops: feature, training``.
_MARKER = re.compile(r"^\s*#\s*nbops\s*:\s*(\w+(?:\s*[,\s]\s*\w+)*)\s*$", re.IGNORECASE)
#: Anything that looks like a marker, valid or not.
_MARKER_LIKE = re.compile(r"^\s*#\s*nbops\s*:", re.IGNORECASE)
_BUILTINS = set(dir(builtins)) | {"get_ipython", "display", "__name__", "__file__"}
#: Names every generated module provides.
PROVIDED = {"nbops", "nbops_store"}


@dataclass(frozen=True)
class StoreRead:
    """How a later stage gets a value an earlier stage persisted: a read from the store.

    ``call`` is the expression, e.g. ``nbops_store.features('tx', version=1)``,
    made only of literals; ``what`` says in words what was persisted.
    """

    name: str  # the variable
    call: str  # the read; or, for a module an earlier stage's cell imported, the import statement
    what: str
    latest: str = ""  # the call without the notebook's version pins (``--latest``); "" if the same
    is_import: bool = False

    def expression(self, latest: bool = False) -> str:
        """The read, or with ``latest`` the read without the notebook's version pins."""
        return (self.latest or self.call) if latest else self.call

    def statement(self, latest: bool = False) -> str:
        """The line a module runs to bind :attr:`name`."""
        return self.call if self.is_import else f"{self.name} = {self.expression(latest)}"


@dataclass
class Cell:
    """One code cell of the notebook and what analysis found: its stages, its translated code, the names it uses."""

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
    #: every stage the cell belongs to (``stage`` is the first); a cell may be tagged into several
    stages: tuple[str, ...] = ()
    star_imports: list[str] = field(default_factory=list)  # modules of `from m import *`
    #: variable -> how a later stage reads it back (what this cell stored of it)
    persisted: dict[str, StoreRead] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``cell N (id ID)``, as messages name a cell (N counts from 1)."""
        return f"cell {self.index + 1} (id {self.id})"

    def in_stage(self, stage: str) -> bool:
        """Whether the cell belongs to ``stage`` (a cell may be tagged into several)."""
        return stage in self.stages


def assign_stage(cell: Cell) -> None:
    """Set the cell's stages from its tags, its stage marker or the nbops magic it uses.

    A marker ``# nbops: STAGE[, STAGE]`` counts on the cell's first line, or on
    the first line after a cell magic line (``%%time``); one anywhere else is
    an ExportError, as is a marker that disagrees with the cell's tags.
    """
    tagged = [t for t in cell.tags if t in (*STAGES, "skip", "parameters")]
    marker = _marker(cell)
    if tagged:
        special = [t for t in tagged if t in ("skip", "parameters")]
        if special and len(set(tagged)) > 1:
            raise ExportError(
                f"{cell.label}: the tag {special[0]!r} cannot be combined with {sorted(set(tagged) - {special[0]})}"
            )
        stages = tuple(dict.fromkeys(tagged))
        if marker is not None and set(marker) != set(stages):
            raise ExportError(
                f"{cell.label}: its tags say {', '.join(stages)} but its marker says {', '.join(marker)}; keep one"
            )
        _set(cell, stages, f"tag {stages[0]!r}" if len(stages) == 1 else f"tags {', '.join(stages)}")
        return
    if marker is not None:
        _set(cell, marker, "first-line comment")
        return
    first = next((line.lstrip() for line in cell.source.splitlines() if line.strip()), "")
    if first.startswith("%%features"):
        _set(cell, ("feature",), "magic %%features")
    elif first.startswith("%%track"):
        _set(cell, ("training",), "magic %%track")


def _set(cell: Cell, stages: tuple[str, ...], reason: str) -> None:
    cell.stages, cell.stage, cell.stage_reason = stages, stages[0], reason


def _marker(cell: Cell) -> tuple[str, ...] | None:
    """The stages the cell's marker names, None if it has none; a misplaced or bogus marker is an error."""
    lines = [(number, line) for number, line in enumerate(cell.source.splitlines(), 1) if line.strip()]
    allowed = {lines[0][0]} if lines else set()
    if lines and lines[0][1].lstrip().startswith("%%") and len(lines) > 1:
        allowed.add(lines[1][0])  # the first line of a cell magic's body
    if len(lines) > 1 and _MARKER_LIKE.match(lines[0][1]) and lines[1][1].lstrip().startswith("%%"):
        magic = lines[1][1].strip().split()[0]
        raise ExportError(
            f"{cell.label}: the cell magic {magic} must be the cell's first line (IPython runs it only there); "
            f"put {lines[0][1].strip()!r} on the line after it"
        )
    found = None
    for number, line in lines:
        if not _MARKER_LIKE.match(line):
            continue
        if number not in allowed:
            raise ExportError(
                f"{cell.label}: the stage marker {line.strip()!r} on line {number} counts only on the cell's first "
                "line or on the line after a cell magic (%%time, ...); move it there"
            )
        m = _MARKER.match(line)
        words = [w.lower() for w in re.split(r"[,\s]+", m.group(1)) if w] if m else []
        bad = [w for w in words if w not in (*STAGES, "skip")]
        if not words or bad:
            shown = bad[0] if bad else line.strip()
            raise ExportError(
                f"{cell.label}: '# nbops: {shown}' names no stage; use feature, training, inference or skip"
                if bad
                else f"{cell.label}: {shown!r} names no stage; use feature, training, inference or skip"
            )
        if "skip" in words and len(set(words)) > 1:
            raise ExportError(f"{cell.label}: 'skip' cannot be combined with other stages in {line.strip()!r}")
        found = tuple(dict.fromkeys(words))
    return found


# -- values a cell persists in the store ------------------------------------------------
#: Store methods whose result a later stage can read again with the same (literal) call.
_READS = {"load", "load_table", "features"}


def persisted(tree: ast.Module) -> dict[str, StoreRead]:
    """Variables the cell stores, and the literal store call that reads each back.

    - ``X`` in ``store.register_features(X, "group", ..., version=V)``: the group's rows,
      ``nbops_store.features("group", version=V)`` (V: the notebook's, else the group's latest);
    - ``X`` in ``store.snapshot(X, "name")`` and ``X = store.training_data(..., save_as="name")``:
      ``nbops_store.load("name")``, the version the earlier stage just wrote;
    - ``X = store.load("name")`` / ``store.features(...)`` with literal arguments: the same call;
    - in a ``with nbops.track(..., register_model="M")`` block, the model it logs
      (``mlflow.<flavor>.log_model(X, ...)``, else the one estimator it fits):
      ``nbops_store.load_model("M")``.

    A variable changed after it was stored (assigned, item-assigned, ``inplace=True``)
    is not persisted: what the store holds is not what the next stage would see.
    """
    found: dict[str, tuple[int, StoreRead]] = {}
    statements = list(tree.body)
    for index, stmt in enumerate(statements):
        for name, read in _stores(stmt):
            found[name] = (index, read)
    result = {}
    for name, (index, read) in found.items():
        if not any(_changes(stmt, name) for stmt in statements[index + 1 :]):
            result[name] = read
    return result


def _stores(stmt: ast.stmt) -> list[tuple[str, StoreRead]]:
    out: list[tuple[str, StoreRead]] = []
    if isinstance(stmt, (ast.Import, ast.ImportFrom)) and not any(a.name == "*" for a in stmt.names):
        # Imports are repeated, not stored: the module binds the name the same way.
        for alias in stmt.names:
            one = (
                ast.Import(names=[alias])
                if isinstance(stmt, ast.Import)
                else ast.ImportFrom(module=stmt.module, names=[alias], level=stmt.level)
            )
            bound = alias.asname or alias.name.split(".")[0]
            out.append((bound, StoreRead(bound, ast.unparse(one), "imported again", is_import=True)))
        return out
    if isinstance(stmt, ast.With):
        track = next((i.context_expr for i in stmt.items if _is_call(i.context_expr, "track")), None)
        if isinstance(track, ast.Call):
            model = _constant(_keyword(track, "register_model"))
            if isinstance(model, str):
                name = _logged_model(stmt.body)
                if name is not None:
                    out.append(
                        (name, StoreRead(name, f"nbops_store.load_model({model!r})", f"registered model {model!r}"))
                    )
        return out
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
    if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
        return out
    method = value.func.attr
    target = (
        stmt.targets[0].id
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        else None
    )
    first = value.args[0] if value.args else None
    if method == "register_features" and isinstance(first, ast.Name):
        group = _constant(value.args[1] if len(value.args) > 1 else _keyword(value, "group"))
        version = _constant(_keyword(value, "version"))
        if isinstance(group, str) and (version is None or isinstance(version, int)):
            shown = f"feature group {group!r}" + (f" version {version}" if version is not None else "")
            latest = f"nbops_store.features({group!r})"
            call = latest if version is None else f"nbops_store.features({group!r}, version={version!r})"
            out.append((first.id, StoreRead(first.id, call, shown, latest)))
    elif method == "snapshot" and isinstance(first, ast.Name):
        name = _constant(value.args[1] if len(value.args) > 1 else _keyword(value, "name"))
        if isinstance(name, str):
            out.append((first.id, StoreRead(first.id, f"nbops_store.load({name!r})", f"snapshot {name!r}")))
    elif method == "training_data" and target is not None:
        name = _constant(_keyword(value, "save_as"))
        if isinstance(name, str):
            out.append((target, StoreRead(target, f"nbops_store.load({name!r})", f"training data saved as {name!r}")))
    elif method in _READS and target is not None and _all_literal(value):
        args = [ast.unparse(a) for a in value.args]  # literals only (checked): the notebook's own values
        args += [f"{k.arg}={ast.unparse(k.value)}" for k in value.keywords]
        what = {"features": "feature group", "load": "snapshot", "load_table": "snapshot"}[method]
        shown = f"{what} {ast.literal_eval(value.args[0])!r}" if value.args else what
        out.append((target, StoreRead(target, f"nbops_store.{method}({', '.join(args)})", shown)))
    return out


def _logged_model(body: list[ast.stmt]) -> str | None:
    """The variable holding the model a run registers: the last one logged, else the one estimator fitted."""
    logged = [
        node.args[0].id
        for node in _walk_statements(body)
        if _is_call(node, "log_model") and node.args and isinstance(node.args[0], ast.Name)
    ]
    if logged:
        return logged[-1]
    if any(_is_call(node, "log_model") for node in _walk_statements(body)):
        return None  # a model logged from an expression: no variable holds it
    fitted: set[str] = set()
    for node in _walk_statements(body):
        if _is_call(node, "fit") and isinstance(node.func, ast.Attribute):
            base = node.func.value
            while isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
                base = base.func.value
            if isinstance(base, ast.Name):
                fitted.add(base.id)
        if isinstance(node, ast.Assign) and _is_call(node.value, "fit"):
            fitted |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return fitted.pop() if len(fitted) == 1 else None


def _walk_statements(body: list[ast.stmt]) -> list[ast.AST]:
    return [node for stmt in body for node in ast.walk(stmt)]


def _changes(stmt: ast.stmt, name: str) -> bool:
    """Does ``stmt`` rebind or change ``name`` (``name = ...``, ``name[k] = ...``, ``name.x(inplace=True)``)?"""
    for node in ast.walk(stmt):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        elif isinstance(node, ast.NamedExpr):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and _base_name(node.func.value) == name
            and any(
                k.arg == "inplace" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                for k in node.keywords
            )
        ):
            return True
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Name) and part.id == name and isinstance(part.ctx, (ast.Store, ast.Del)):
                    return True
                if isinstance(part, (ast.Subscript, ast.Attribute)) and _base_name(part) == name:
                    return True
    return False


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_call(node: ast.AST | None, method: str) -> TypeGuard[ast.Call]:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == method) or (
        isinstance(func, ast.Name) and func.id == method
    )


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _constant(node: ast.AST | None) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def _all_literal(call: ast.Call) -> bool:
    parts = [*call.args, *(k.value for k in call.keywords)]
    if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        return False
    try:
        for part in parts:
            ast.literal_eval(part)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return bool(call.args)


# -- names -------------------------------------------------------------------------
class _Scope:
    """The local names of a function, lambda, class body or comprehension."""

    def __init__(self, kind: str, names: set[str] | None = None) -> None:
        self.kind = kind  # "function", "class" or "comprehension"
        self.names = names if names is not None else set()


class _Names(ast.NodeVisitor):
    """Top-level definitions, names used when the cell runs, and names used in function bodies.

    Nodes are visited in the order Python evaluates them (an assignment's
    value before its targets), so ``df = df.dropna()`` uses the ``df`` an
    earlier cell made, and scopes follow Python's rules: comprehension
    variables, ``except ... as e``, ``with ... as f``, walrus targets and
    ``match`` captures are bound where Python binds them.
    """

    def __init__(self) -> None:
        self.defines: set[str] = set()
        self.uses_now: set[str] = set()
        self.uses_later: set[str] = set()
        self.star_imports: list[str] = []
        self._scopes: list[_Scope] = []
        self._late = 0  # > 0 inside a function or lambda body: runs when called, not now

    # -- binding and use --
    def _is_local(self, name: str) -> bool:
        for depth, scope in enumerate(reversed(self._scopes)):
            if scope.kind == "class" and depth > 0:
                continue  # a class body's names are not visible in its methods
            if name in scope.names:
                return True
        return False

    def _use(self, name: str) -> None:
        if self._is_local(name):
            return
        if self._late:
            self.uses_later.add(name)
        elif name not in self.defines:
            self.uses_now.add(name)

    def _bind(self, name: str) -> None:
        if self._scopes:
            self._scopes[-1].names.add(name)
        else:
            self.defines.add(name)

    def _bind_target(self, target: ast.AST) -> None:
        """Bind the names an assignment target binds; subscripts and attributes use their base."""
        if isinstance(target, ast.Name):
            self._bind(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind_target(element)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value)
        else:  # x[i] = ..., x.a = ...: x must exist already
            self.visit(target)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:  # Load, and Del (the name must exist)
            self._use(node.id)

    # -- statements, in evaluation order --
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._bind_target(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._use(node.target.id)
        self.visit(node.value)
        self._bind_target(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        if not self._late:
            self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self._bind_target(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._bind_target(node.target)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind_target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        # A walrus in a comprehension binds in the scope around it.
        outer = [s for s in self._scopes if s.kind != "comprehension"]
        if outer:
            outer[-1].names.add(node.target.id)
        elif self._scopes:  # comprehensions at the top level of the cell
            self.defines.add(node.target.id)
        else:
            self._bind(node.target.id)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if self._scopes:
                self._scopes[-1].names.discard(name)
            self.defines.add(name)  # once the function runs

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest:
            self._bind(node.rest)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star_imports.append(node.module or "")
            else:
                self._bind(alias.asname or alias.name)

    # -- scopes --
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            if not self._late:  # annotations are evaluated when the def runs
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
                for annotation in [a.annotation for a in every if a is not None] + [node.returns]:
                    if annotation is not None:
                        self.visit(annotation)
            self._bind(node.name)
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
        self._late += 1
        self._scopes.append(_Scope("function", params | _bound_in(body)))
        for stmt in body:
            self.visit(stmt)
        self._scopes.pop()
        self._late -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.bases, *node.decorator_list, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._scopes.append(_Scope("class"))  # the body runs now, statement by statement
        for stmt in node.body:
            self.visit(stmt)
        self._scopes.pop()
        self._bind(node.name)

    def _comprehension(self, node: Any) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self._scopes.append(_Scope("comprehension"))
        for index, gen in enumerate(generators):
            if index:
                self.visit(gen.iter)
            self._bind_target(gen.target)
            for condition in gen.ifs:
                self.visit(condition)
        for part in ("elt", "key", "value"):
            if getattr(node, part, None) is not None:
                self.visit(getattr(node, part))
        self._scopes.pop()

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_DictComp = _comprehension
    visit_GeneratorExp = _comprehension


def _bound_in(body: Sequence[ast.AST]) -> set[str]:
    """Names a function body binds (its locals), not looking into nested scopes; minus global/nonlocal ones."""
    names: set[str] = set()
    declared: set[str] = set()
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        todo.extend(ast.iter_child_nodes(node))
    return names - declared


def analyse(cell: Cell, tree: ast.Module) -> None:
    """Fill in what the cell defines, uses now and uses later, and what it persists in the store."""
    names = _Names()
    for stmt in tree.body:
        names.visit(stmt)
    cell.defines = names.defines
    cell.uses_now = names.uses_now - _BUILTINS
    cell.uses_later = names.uses_later - _BUILTINS - names.defines
    cell.star_imports = names.star_imports
    cell.persisted = persisted(tree)


# -- selection -----------------------------------------------------------------------
#: Findings that would make a module fail with NameError: export refuses them.
FATAL = frozenset({"defined-in-other-stage", "defined-in-skipped-cell", "undefined", "used-before-defined"})


@dataclass
class Finding:
    """What an export reports: a name a module would lack (``fatal``: the export refuses), or cells run out of order."""

    kind: str  # "used-before-defined", "defined-in-skipped-cell", "defined-in-other-stage", "execution-order", "undefined"
    cell: str
    name: str | None
    message: str
    fatal: bool = False  # the module would fail with NameError: export refuses

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and (self.kind, self.cell, self.name, self.message) == (
            other.kind, other.cell, other.name, other.message,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Selection:
    """What one stage's module holds."""

    cells: list[Cell]  # in notebook order
    reads: list[StoreRead]  # values earlier stages persisted, read from the store first
    parameters: list[str]  # the notebook parameters these cells use, in the parameters cell's order
    findings: list[Finding]


def select_stage(cells: Sequence[Cell], stage: str, parameters: Iterable[str]) -> Selection:
    """The cells of ``stage``, the support cells they need, the store reads and parameters they use."""
    params = list(parameters)
    provided = set(params) | PROVIDED
    star = any(c.star_imports for c in cells if c.in_stage(stage) or not c.stages)
    chosen = {c.index for c in cells if c.in_stage(stage)}
    findings: list[Finding] = []
    reads: dict[str, StoreRead] = {}
    used_params: set[str] = set()
    deferred: list[tuple[Cell, str, Cell]] = []  # (cell with a function, name, later cell defining it)
    todo = [c for c in cells if c.index in chosen]
    while todo:
        cell = todo.pop()
        for name, late in [(n, False) for n in sorted(cell.uses_now)] + [(n, True) for n in sorted(cell.uses_later)]:
            if name in provided:
                used_params |= {name} & set(params)
                continue
            definer = _definer(cells, cell, name, stage, chosen, late)
            if isinstance(definer, StoreRead):
                reads.setdefault(name, definer)
                continue
            if isinstance(definer, Finding):
                if definer.kind == "undefined" and star:
                    # It may come from a `from m import *`, which export cannot see into: take those cells.
                    for star_cell in cells:
                        if (
                            star_cell.star_imports
                            and star_cell.index < cell.index
                            and star_cell.index not in chosen
                            and (not star_cell.stages or star_cell.in_stage(stage))
                        ):
                            chosen.add(star_cell.index)
                            todo.append(star_cell)
                    continue
                definer.fatal = definer.kind in FATAL and not late
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
                    fatal=True,
                )
                if finding not in findings:
                    findings.append(finding)
                break
    return Selection(
        [c for c in cells if c.index in chosen], list(reads.values()), [p for p in params if p in used_params], findings
    )


def _definer(
    cells: Sequence[Cell], user: Cell, name: str, stage: str, chosen: set[int], late: bool
) -> Cell | StoreRead | Finding | None:
    before = [c for c in cells if c.index < user.index and name in c.defines]
    if user.index in chosen and name in user.defines and late:
        return None  # a function of this cell calling another function of this cell
    usable = [c for c in before if not c.stages or c.in_stage(stage)]
    if usable:
        return usable[-1]
    others = [c for c in before if c.stages and not c.in_stage(stage)]
    if late and others:
        carried = _carried(cells, others[-1], user, name)
        if carried is not None and carried.is_import:
            return carried  # an earlier import, repeated, serves the function whenever it is called
    if late:
        later = [c for c in cells if c.index > user.index and name in c.defines and (not c.stages or c.in_stage(stage))]
        if later:
            return later[0]  # a function body may call a helper defined further down
    if others:
        other = others[-1]
        if other.stage == "skip":
            return Finding(
                "defined-in-skipped-cell",
                user.label,
                name,
                f"{user.label} uses {name!r}, which only {other.label} defines, and that cell is skipped; "
                "remove its 'skip' mark or define the name in a cell the stage includes",
            )
        if other.stage == "parameters":
            return None
        earlier = min(STAGES.index(s) for s in other.stages if s in STAGES) < STAGES.index(stage)
        carried = _carried(cells, other, user, name)
        if carried is not None and (earlier or carried.is_import):
            return carried
        fixes = (
            f"either persist it in {other.label} (a DataFrame: store.snapshot({name}, {name!r}) or "
            f"store.register_features({name}, ...); a model: log it in a %%track --register-model cell), so that "
            f"the {stage} stage reads it from the store, or tag {other.label} into both stages (tags {other.stage} "
            f"and {stage}, or '# nbops: {other.stage}, {stage}')"
        )
        if not earlier:
            fixes = (
                f"the {other.stage} stage runs after the {stage} stage, so move the code into a cell without a "
                f"stage mark (each stage then includes it) or tag {other.label} into both stages"
            )
        return Finding(
            "defined-in-other-stage",
            user.label,
            name,
            f"{user.label} ({stage}) uses {name!r}, which {other.label} of the {other.stage} stage computes; "
            f"stages run as separate processes: {fixes}",
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


def _carried(cells: Sequence[Cell], definer: Cell, user: Cell, name: str) -> StoreRead | None:
    """How ``user`` can get ``definer``'s ``name`` without running its cell: the last store write of it
    from the definer on (a ``%%features`` cell may register a frame an earlier cell built), provided
    no cell changes it after that write; or the definer's import, repeated."""
    between = [c for c in cells if definer.index <= c.index < user.index]
    writers = [c for c in between if name in c.persisted and c.stages and c.stage not in ("skip", "parameters")]
    if not writers:
        return None
    writer = writers[-1]
    if any(_changes(stmt, name) for c in between if c.index > writer.index for stmt in _statements(c)):
        return None  # the notebook's value is no longer what the store holds
    return writer.persisted[name]


def _statements(cell: Cell) -> list[ast.stmt]:
    try:
        return ast.parse(cell.code).body
    except SyntaxError:
        return []


def execution_order_findings(cells: Sequence[Cell]) -> list[Finding]:
    """A finding for each cell that ran before a cell above it: the notebook's state may not match its order."""
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
