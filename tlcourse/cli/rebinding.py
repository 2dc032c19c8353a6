"""Find answer cells that rebind what the check cells call (lesson 00: ``tlcourse grade``).

A check cell is ``grade.check_x(answer).assert_passed()``; an answer cell that runs ``grade.check_x = ...``,
rebinds ``grade`` itself, patches a ``tlcourse`` module (``CheckResult``, ``record_check``), ``sys.modules`` or
IPython's display, or calls ``setattr`` on any of them, makes the check cell call something else. Graders
already refuse to record a result they did not make (:mod:`tlcourse.checks`); this static scan of the
submission's own cells (those that differ from every cell of the template) names the cell and line, so the
gradebook flags the submission and scores the checks it could have faked 0.

Code built at run time (``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``) is flagged for a human to
read, without costing points: an honest notebook rarely needs it, and no static scan can see what it does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tlcourse.cli.checkcells import normalized_source

EVERY_CHECK = "*"
WATCHED_PACKAGES = ("tlcourse", "IPython", "builtins", "sys")
"""Modules whose objects a check cell relies on: an answer cell may read them, never change them."""
WATCHED_NAMES = frozenset({"get_ipython", "__builtins__"})
"""Names (besides those modules) whose objects are the notebook's display and built-ins."""
DYNAMIC_CALLS = frozenset({"exec", "eval", "compile", "__import__"})
SETTERS = frozenset({"setattr", "delattr", "__setattr__", "__delattr__"})
NAMESPACES = frozenset({"globals", "vars", "locals"})


@dataclass(frozen=True)
class Finding:
    """One suspicious statement: where, what, and which graders it could fake (``*``: all of them)."""

    cell: int
    """1-based position of the cell in the submission."""
    line: int
    what: str
    graders: frozenset[str] = field(default_factory=frozenset)

    @property
    def costs_points(self) -> bool:
        return bool(self.graders)

    def text(self) -> str:
        return f"cell {self.cell}, line {self.line}: {self.what}"


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _shown(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def grader_roots(check_sources: Iterable[str]) -> dict[str, set[str]]:
    """``{name: graders}`` for the names check cells start from: ``grade`` for ``grade.check_x(...)`` (the
    graders reached through it), ``check_x`` itself for a bare call."""
    roots: dict[str, set[str]] = {}
    for source in check_sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                root = _root(node.func)
                if name.startswith("check_") and isinstance(root, ast.Name):
                    roots.setdefault(root.id, set()).add(name)
    return roots


def _module_aliases(sources: Iterable[str]) -> set[str]:
    """Names bound anywhere by an import of a watched package (``import tlcourse.checks as c`` -> ``c``)."""
    aliases = set(WATCHED_PACKAGES) | WATCHED_NAMES
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in WATCHED_PACKAGES:
                        aliases.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in WATCHED_PACKAGES:
                aliases.update(alias.asname or alias.name for alias in node.names)
    return aliases


class _Scanner(ast.NodeVisitor):
    def __init__(self, cell: int, roots: dict[str, set[str]], aliases: set[str]) -> None:
        self.cell, self.roots, self.aliases = cell, roots, aliases
        self.found: list[Finding] = []
        self.scopes: list[set[str]] = []  # the names declared global in each enclosing function

    def _add(self, node: ast.AST, what: str, graders: Iterable[str] = ()) -> None:
        self.found.append(Finding(self.cell, getattr(node, "lineno", 0), what, frozenset(graders)))

    def _graders_behind(self, node: ast.AST) -> set[str] | None:
        """The graders a change inside ``node`` (an attribute or item of something) could fake; None when
        the object is none of the check cells' business."""
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call):
            if getattr(node.value.func, "id", None) in NAMESPACES:  # globals()["grade"] = ...
                return {EVERY_CHECK}
        root = _root(node)
        if not isinstance(root, ast.Name):
            return None
        if root.id in self.roots:
            if isinstance(node, ast.Attribute) and node.value is root and node.attr.startswith("check_"):
                return {node.attr}
            return {EVERY_CHECK}
        return {EVERY_CHECK} if root.id in self.aliases else None

    def _target(self, target: ast.AST, verb: str) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for item in target.elts:
                self._target(item, verb)
        elif isinstance(target, ast.Starred):
            self._target(target.value, verb)
        elif isinstance(target, ast.Name):
            at_top = not self.scopes or target.id in self.scopes[-1]
            if at_top and target.id in self.roots:
                self._add(target, f"{verb} {target.id}, which the check cells call", [EVERY_CHECK])
        else:
            graders = self._graders_behind(target)
            if graders:
                self._add(target, f"{verb} {_shown(target)}", graders)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target, "assigns to")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target, "assigns to")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target, "assigns to")
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target, "deletes")
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._target(node.target, "loops over")
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._target(item.optional_vars, "binds")
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._target(node.target, "assigns to")
        self.generic_visit(node)

    def _binds_name(self, node: ast.AST, name: str, verb: str) -> None:
        self._target(ast.copy_location(ast.Name(id=name, ctx=ast.Store()), node), verb)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not (alias.name == "tlcourse" or alias.name.startswith("tlcourse.checks")):
                self._binds_name(node, alias.asname or alias.name.split(".")[0], "imports another module as")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            genuine = module.startswith("tlcourse.checks") or (
                module == "tlcourse" and alias.name == "checks"
            )
            if not genuine:
                self._binds_name(node, alias.asname or alias.name, "imports something else as")

    def _scope(self, node: ast.AST) -> None:
        self.scopes.append({name for n in ast.walk(node) if isinstance(n, ast.Global) for name in n.names})
        self.generic_visit(node)
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._binds_name(node, node.name, "defines a function named")
        self._scope(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._binds_name(node, node.name, "defines a function named")
        self._scope(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._binds_name(node, node.name, "defines a class named")
        self._scope(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        dotted = _shown(node.func)
        if name in SETTERS and node.args:
            first = node.args[0]
            graders = self._graders_behind(first) or (
                {EVERY_CHECK} if isinstance(first, ast.Name) and first.id in self.roots else None
            )
            if graders:
                self._add(node, f"calls {name}() on {_shown(first)}", graders)
        elif name in DYNAMIC_CALLS or dotted.startswith("importlib."):
            self._add(node, f"runs code built at run time ({dotted}): read it by hand")
        self.generic_visit(node)


def scan_answer_cells(
    cells: Sequence[tuple[int, str]], template_sources: Sequence[str], check_sources: Sequence[str]
) -> list[Finding]:
    """Findings in the submission's cells ``(position, source)`` that are not cells of the template."""
    normalized = {normalized_source(source) for source in template_sources}
    answers = [
        (position, source) for position, source in cells if normalized_source(source) not in normalized
    ]
    roots = grader_roots(check_sources)
    aliases = _module_aliases([*template_sources, *(source for _, source in answers)]) - set(roots)
    found: list[Finding] = []
    for position, source in answers:
        try:
            tree = ast.parse(_without_magics(source))
        except SyntaxError:
            continue
        scanner = _Scanner(position, roots, aliases)
        scanner.visit(tree)
        found += scanner.found
    return found


def _without_magics(source: str) -> str:
    """IPython magics and shell escapes (``%time``, ``!ls``) become blank lines, so the rest still parses."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
