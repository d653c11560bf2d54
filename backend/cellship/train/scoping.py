"""Which global names a piece of module-level code needs and which it binds.

Python's own scoping rules decide (:mod:`symtable`), plus one thing symtable cannot tell:
whether a name the code binds is read BEFORE it is bound (``x = x / 255.0`` needs ``x``
from an earlier cell). Used by :mod:`cellship.train.program` to find what a cell needs from the
cells before it.
"""

from __future__ import annotations

import ast
import symtable


def free_globals(source: str) -> set[str]:
    """Global names a piece of module-level code reads but does not itself bind
    (raises SyntaxError for code Python would refuse)."""
    table = symtable.symtable(source, "<cell>", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_local()}
    used = {s.get_name() for s in table.get_symbols() if s.is_referenced() and not s.is_local()}
    return (used | _nested_reads(table)) - bound


def read_in_functions(source: str) -> set[str]:
    """Global names the code's functions (and lambdas, class bodies) read, bound at
    module level or not: a function called before the cell binds such a name reads the
    kernel's value (``def f(): global a; a = a + 1`` / ``f()`` / ``a = 0``)."""
    return _nested_reads(symtable.symtable(source, "<cell>", "exec"))


def _nested_reads(table: symtable.SymbolTable) -> set[str]:
    used: set[str] = set()

    def visit(t: symtable.SymbolTable) -> None:
        for sym in t.get_symbols():
            if sym.is_global() and sym.is_referenced():
                used.add(sym.get_name())
        for child in t.get_children():
            visit(child)

    for child in table.get_children():
        visit(child)
    return used


class _ReadBeforeBound(ast.NodeVisitor):
    """Module-level names read before the code itself binds them, in evaluation order
    (``x = x / 255.0`` reads ``x`` from an earlier cell). Function bodies run later and
    are not entered; comprehension variables are local. Class bodies run at once, in a
    scope of their own that their comprehensions do not see: ``class K: v = b`` before
    ``b = 2`` reads ``b`` from an earlier cell (found by the %%train fuzzer)."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.early: set[str] = set()
        self.local: list[tuple[bool, set[str]]] = []  # (is a class body, names), innermost last

    def _read(self, name: str) -> None:
        for depth, (is_class, names) in enumerate(reversed(self.local)):
            if is_class and depth:
                continue  # a class's names are not visible to the scopes nested in it
            if name in names:
                return
        if name not in self.bound:
            self.early.add(name)

    def _bind(self, name: str) -> None:
        if self.local and self.local[-1][0]:
            self.local[-1][1].add(name)  # a class attribute, not a module-level name
        else:
            self.bound.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
            self.visit(node.value)
            self._bind(node.target.id)
        else:
            self.visit(node.value)
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(expr)
        self._bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(expr)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(expr)
        self.local.append((True, set()))
        for stmt in node.body:
            self.visit(stmt)
        self.local.pop()
        self._bind(node.name)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def _comprehension(self, node: ast.AST, *results: ast.AST) -> None:
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        scope = {n.id for g in generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self.local.append((False, scope))
        for i, gen in enumerate(generators):
            if i:
                self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)
        for result in results:
            self.visit(result)
        self.local.pop()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, node.elt)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node, node.elt)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node, node.elt)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, node.key, node.value)


def read_before_bound(source: str) -> set[str]:
    """Names the code binds at module level but reads before binding them."""
    visitor = _ReadBeforeBound()
    for stmt in ast.parse(source).body:
        visitor.visit(stmt)
    return visitor.early & bound_names(source)


def bound_names(source: str) -> set[str]:
    """Names module-level code binds (assignments, imports, def, class)."""
    table = symtable.symtable(source, "<cell>", "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_local()}
