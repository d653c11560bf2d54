"""Turn a ``%%train`` cell plus the notebook's context into one runnable program.

What a distributed job needs from earlier cells is found by static analysis, not by
pickling the kernel (which drags in open files, sessions and GPU handles):

* the cell's free global names are found with :mod:`symtable` (Python's own scoping rules);
* each top-level statement of earlier cells is classified as an *import*, a *definition*
  (``def``/``class``), a *constant* (an assignment of literals and other constants), or
  *run-time* code (anything else: loading data, training, printing);
* the needed names are closed transitively over the last definition of each name, in
  execution order, and the statements that define them are copied into the program;
* a needed name whose last definition is run-time code cannot be shipped as code: it is
  reported by name with a fix (``--ship NAME`` sends the kernel's value with cloudpickle,
  or define it inside the cell).

IPython syntax arrives already transformed by the kernel (``get_ipython().system(...)``);
such statements are dropped from the program (with a note when they were in the cell).
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from cellship.errors import ProgramError
from cellship.train.scoping import bound_names, free_globals, read_before_bound, read_in_functions

_BUILTINS = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__builtins__",
                                        "__spec__", "__loader__", "__package__"}
_CONSTANT_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp,
                   ast.BinOp, ast.BoolOp, ast.Compare, ast.Name, ast.Attribute, ast.Load,
                   ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.Starred,
                   ast.JoinedStr, ast.FormattedValue)


def _split_lines(source: str) -> list[str]:
    """Lines as Python's tokenizer sees them: str.splitlines() also breaks on U+2028,
    form feeds and other characters that may sit inside string literals."""
    return re.split(r"\r\n|\r|\n", source)


@dataclass(frozen=True)
class HistoryCell:
    """One executed cell of the kernel: its execution number and Python source."""

    number: int
    source: str


@dataclass(frozen=True)
class Statement:
    """A top-level statement of an earlier cell, classified."""

    cell: int
    line: int
    kind: str  # import | definition | constant | runtime | ipython
    source: str
    defines: frozenset[str]
    uses: frozenset[str]
    star_import: bool = False
    future: bool = False

    @property
    def where(self) -> str:
        return f"cell [{self.cell}], line {self.line}"


@dataclass(frozen=True)
class Program:
    """The program every replica runs, and what went into it."""

    source: str
    cell_first_line: int
    context: tuple[Statement, ...]
    shipped: Mapping[str, bytes] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def build_program(cell: str, history: Sequence[HistoryCell] = (),
                  namespace: Mapping[str, Any] | None = None,
                  ship: Iterable[str] = (), line_offset: int = 0) -> Program:
    """Build the program for ``cell`` given the kernel's ``history`` and ``namespace``.

    ``line_offset`` is added to line numbers in messages (1 for a cell magic's body, so
    users read the line numbers of the cell as the notebook shows it).

    Raises ProgramError (before anything starts) for a syntax error in the cell, IPython
    syntax that cannot run outside the kernel, or names that cannot be shipped.
    """
    ship = tuple(ship)
    _check_text(cell, "the cell", line_offset)
    cell_source, notes = _strip_ipython(cell, line_offset)
    cell_future, cell_source = _take_future(cell_source, cell=-1)
    try:
        cell_globals = free_globals(cell_source) | read_before_bound(cell_source)
    except SyntaxError as err:  # what ast accepts but the compiler refuses (e.g. `nonlocal x`)
        raise ProgramError(f"Syntax error at line {(err.lineno or 0) + line_offset} of the cell: "
                           f"{err.msg}. Fix the cell and run it again; nothing was started.") from None
    except (RecursionError, MemoryError):
        raise ProgramError(_TOO_DEEP) from None

    statements = [s for h in history for s in classify_cell(h)]
    last_definition: dict[str, Statement] = {}
    for stmt in statements:
        for name in stmt.defines:
            last_definition[name] = stmt
    has_star_import = any(s.star_import for s in statements)

    shipped = _pickle_shipped(ship, namespace)
    included: dict[int, Statement] = {}
    unshippable: dict[str, Statement | None] = {}
    seen: set[str] = set()
    queue = sorted(cell_globals | _maybe_read_early(cell_source, cell_globals, last_definition))
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in shipped:
            continue
        definition = last_definition.get(name)
        if definition is None:
            if name in _BUILTINS or has_star_import:
                continue
            if namespace is not None and name in namespace and not name.startswith("_"):
                unshippable[name] = None
            continue
        if definition.kind == "runtime" or (
                _self_referential(definition)
                and _render_statement(definition, namespace) == definition.source):
            unshippable[name] = definition
            continue
        if id(definition) not in included:
            included[id(definition)] = definition
            queue.extend(sorted(definition.uses - definition.defines))
    # Star imports may provide any name: keep them all, they are cheap and order-safe.
    # __future__ imports changed how every later cell compiled: keep them too.
    for stmt in statements:
        if stmt.star_import or stmt.future:
            included[id(stmt)] = stmt

    if unshippable:
        raise ProgramError(_unshippable_message(unshippable))

    context = tuple(s for s in statements if id(s) in included) + tuple(cell_future)
    for stmt in cell_future:  # rendered above the bootstrap: checked on their own lines
        _check_compiles(stmt.source, 1, "the cell", line_offset + stmt.line - 1)
    source, first_line = _render(context, cell_source, namespace, bool(shipped))
    _check_compiles(source, first_line, "the cell", line_offset)
    return Program(source=source, cell_first_line=first_line, context=context,
                   shipped=shipped, notes=tuple(notes))


def _maybe_read_early(cell: str, needed: set[str], last: Mapping[str, Statement]) -> set[str]:
    """Names the cell binds itself but its functions read as globals: a call before the
    binding reads the kernel's value, so one that can be shipped as code is (a constant,
    an import, a definition: harmless when the cell rebinds it). A run-time value is not
    demanded: that would refuse the common ``def f(): return model`` / ``model = ...``."""
    try:
        late = read_in_functions(cell) - needed
    except (SyntaxError, RecursionError, MemoryError):
        return set()
    return {name for name in late if name in last and last[name].kind != "runtime"
            and not _self_referential(last[name])}


# -- the cell ------------------------------------------------------------------------------

_TOO_DEEP = ("The cell nests expressions too deeply for Python's parser (a very long chain of "
             "operators, brackets or unary signs); split it into smaller expressions. "
             "Nothing was started.")


_NOT_TEXT = re.compile("[\ud800-\udfff\x00]")


def _check_text(source: str, what: str, line_offset: int = 0) -> None:
    """A lone surrogate (what a notebook's JSON can carry as ``\\ud800``) or a NUL is not
    text Python can parse or a file can hold: name its line rather than fail on encoding
    (or say "syntax error" with no line)."""
    found = _NOT_TEXT.search(source)
    if found is not None:
        line = len(_split_lines(source[:found.start()])) + line_offset
        if found.group() == "\x00":
            raise ProgramError(f"Line {line} of {what} holds a NUL character (\\0), which Python "
                               "source cannot contain; remove it. Nothing was started.")
        raise ProgramError(f"Line {line} of {what} holds U+{ord(found.group()):04X}, half of a "
                           "surrogate pair, which is not a character; remove it (or write it "
                           "as an escape such as '\\ud800' inside a string). Nothing was "
                           "started.")


def _check_compiles(source: str, first_line: int, what: str, line_offset: int = 0) -> None:
    """Compile the program as the replicas will: what ``ast.parse`` accepts but the
    compiler refuses (``return`` or ``break`` at the top level, top-level ``await``,
    ``from __future__ import braces``) is reported against the cell's own line before
    anything starts, not as a traceback of program.py in every replica's log."""
    try:
        compile(source, "program.py", "exec", dont_inherit=True)
    except SyntaxError as err:
        line = (err.lineno or first_line) - first_line + 1
        where = (f"line {line + line_offset} of {what}" if line >= 1
                 else "the code taken from earlier cells")
        raise ProgramError(f"Syntax error at {where}: {err.msg}. The job runs the cell as a "
                           "plain Python script; fix it and run it again; nothing was "
                           "started.") from None
    except (RecursionError, MemoryError):
        raise ProgramError(_TOO_DEEP) from None


def _parse(source: str, what: str, line_offset: int = 0) -> ast.Module:
    try:
        return ast.parse(source)
    except (RecursionError, MemoryError):
        raise ProgramError(_TOO_DEEP) from None
    except SyntaxError as err:
        where = f"line {err.lineno + line_offset} of {what}" if err.lineno else what
        text = (err.text or "").rstrip("\n")
        pointer = ""
        if text and err.offset:
            pointer = "\n    " + text + "\n    " + " " * (max(err.offset, 1) - 1) + "^"
        raise ProgramError(f"Syntax error at {where}: {err.msg}.{pointer}\n"
                           "Fix the cell and run it again; nothing was started.") from None


def _ipython_call(node: ast.AST) -> ast.Call | None:
    """The ``get_ipython().method(...)`` call a statement consists of, if any."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):
            return node.value
    return None


def _describe_ipython(call: ast.Call) -> str:
    # _ipython_call only returns get_ipython().<method>(...) calls
    method = call.func.attr if isinstance(call.func, ast.Attribute) else "<method>"
    # IPython's transforms pass the command / magic name and line as string constants.
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if method == "system" and args:
        return f"!{args[0]}"
    if method == "run_line_magic" and args:
        return f"%{args[0]} {args[1] if len(args) > 1 else ''}".rstrip()
    if method == "run_cell_magic" and args:
        return f"%%{args[0]}"
    return f"get_ipython().{method}(...)"


def _uses_get_ipython(node: ast.AST) -> int | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == "get_ipython":
            return getattr(sub, "lineno", None)
    return None


def _strip_ipython(cell: str, line_offset: int = 0) -> tuple[str, list[str]]:
    """Replace top-level IPython statements of the cell by ``pass``, keeping line numbers."""
    tree = _parse(cell, "the cell", line_offset)
    lines = _split_lines(cell)
    notes: list[str] = []
    for node in tree.body:
        call = _ipython_call(node)
        if call is not None:
            shown = _describe_ipython(call)
            notes.append(f"line {node.lineno + line_offset}: `{shown}` runs in the kernel only; "
                         "it was left out of the job (install packages in the environment "
                         "the job uses instead of with !pip).")
            for i in range(node.lineno - 1, (node.end_lineno or node.lineno)):
                lines[i] = "pass  # cellship: left out IPython syntax" if i == node.lineno - 1 else ""
            continue
        line = _uses_get_ipython(node)
        if line is not None:
            raise ProgramError(
                f"Line {line + line_offset} of the cell uses IPython syntax (like `x = !cmd` or `%time`) "
                "inside an expression; it cannot run outside the kernel. Move it to a cell "
                "of its own or use plain Python (subprocess, time).")
    text = "\n".join(lines)
    return (text if text.endswith("\n") else text + "\n"), notes


# -- scoping --------------------------------------------------------------------------------

def _self_referential(stmt: Statement) -> bool:
    """A constant defined from its own earlier value (``N = N * 2``): its source alone
    cannot recreate it."""
    return stmt.kind == "constant" and bool(stmt.uses & stmt.defines)


# -- earlier cells --------------------------------------------------------------------------

def _is_constant_expr(node: ast.AST) -> bool:
    return all(isinstance(n, _CONSTANT_NODES) for n in ast.walk(node))


def _is_constant_assignment(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assign):
        targets_ok = all(isinstance(t, ast.Name) or (isinstance(t, (ast.Tuple, ast.List)) and
                                                     all(isinstance(e, ast.Name) for e in t.elts))
                         for t in node.targets)
        return targets_ok and _is_constant_expr(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.value is not None and \
            _is_constant_expr(node.value)
    return False


def _is_definition_block(node: ast.stmt) -> bool:
    """``try: import x except ImportError: x = None`` and ``if`` blocks of definitions."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef, ast.Pass)) or _is_constant_assignment(node):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    if isinstance(node, ast.If):
        return _is_constant_expr(node.test) and all(map(_is_definition_block, node.body + node.orelse))
    if isinstance(node, ast.Try):
        handlers = [s for h in node.handlers for s in h.body]
        return all(map(_is_definition_block, node.body + handlers + node.orelse + node.finalbody))
    return False


def _kind(node: ast.stmt) -> str:
    if _ipython_call(node) is not None or _uses_get_ipython(node) is not None:
        return "ipython"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "import"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "definition"
    if _is_constant_assignment(node):
        return "constant"
    if isinstance(node, (ast.If, ast.Try)) and _is_definition_block(node):
        return "definition"
    return "runtime"


def classify_cell(cell: HistoryCell) -> list[Statement]:
    """Classify the top-level statements of one earlier cell.

    Cells that do not parse, and ``%%train`` (or any other cell-magic) cells, contribute
    nothing: they defined nothing in this kernel.
    """
    try:
        tree = ast.parse(cell.source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: surrogates
        return []
    lines = _split_lines(cell.source)
    out: list[Statement] = []
    for node in tree.body:
        kind = _kind(node)
        if kind == "ipython":
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[start - 1:node.end_lineno])
        try:
            defines = frozenset(bound_names(text))
            uses = frozenset(free_globals(text))
        except (SyntaxError, RecursionError, MemoryError):
            # A statement that parses only in its cell's context (e.g. `return` misuse):
            # it cannot be shipped as code; its names count as run-time values.
            defines, uses, kind = frozenset(), frozenset(), "runtime"
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        star = not future and isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        out.append(Statement(cell=cell.number, line=start, kind=kind, source=text,
                             defines=defines, uses=uses, star_import=star, future=future))
    return out


# -- shipping by value ----------------------------------------------------------------------

def _pickle_shipped(names: Sequence[str], namespace: Mapping[str, Any] | None) -> dict[str, bytes]:
    if not names:
        return {}
    if namespace is None:
        raise ProgramError("--ship needs a kernel to take values from; it works in the "
                           "%%train magic, not from the command line.")
    import cloudpickle

    shipped: dict[str, bytes] = {}
    problems: list[str] = []
    for name in names:
        if name not in namespace:
            problems.append(f"`{name}`: there is no variable of that name in this kernel")
            continue
        try:
            shipped[name] = cloudpickle.dumps(namespace[name])
        except Exception as err:
            problems.append(f"`{name}` ({type(namespace[name]).__name__}) cannot be pickled: "
                            f"{type(err).__name__}: {err}")
    if problems:
        raise ProgramError("Cannot ship by value:\n  " + "\n  ".join(problems) +
                           "\nCreate such objects inside the %%train cell (or in a function "
                           "it calls) instead.")
    return shipped


def _unshippable_message(names: Mapping[str, Statement | None]) -> str:
    lines = []
    for name in sorted(names):
        stmt = names[name]
        if stmt is None:
            lines.append(f"`{name}` exists in the kernel but no earlier cell defines it as code")
        else:
            first = stmt.source.strip().splitlines()[0]
            lines.append(f"`{name}` is computed at run time ({stmt.where}: `{first[:60]}`)")
    fix = ",".join(sorted(names))
    return ("The cell needs values that cannot be shipped as code:\n  " + "\n  ".join(lines) +
            f"\nAdd `--ship {fix}` to send the kernel's values (cloudpickle), or compute "
            "them inside the %%train cell or in a function it calls. Nothing was started.")


# -- rendering ------------------------------------------------------------------------------

def _literal_repr(value: Any) -> str | None:
    """``repr(value)`` if it is a plain literal that reads back equal, else None."""
    if isinstance(value, (bool, int, float, str, bytes, type(None), tuple, list, dict, set, frozenset)):
        text = repr(value)
        try:
            if ast.literal_eval(text) == value and len(text) <= 10_000:
                return text
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return None


def _render_statement(stmt: Statement, namespace: Mapping[str, Any] | None) -> str:
    """Constants take the kernel's current value when it is a plain literal, so a later
    redefinition or an order of cells different from the page cannot skew them."""
    if stmt.kind == "constant" and namespace is not None and stmt.defines:
        reprs = {n: _literal_repr(namespace[n]) for n in sorted(stmt.defines) if n in namespace}
        if len(reprs) == len(stmt.defines) and all(r is not None for r in reprs.values()):
            return "\n".join(f"{n} = {r}" for n, r in reprs.items())
    return stmt.source


def _render(context: Sequence[Statement], cell: str, namespace: Mapping[str, Any] | None,
            has_shipped: bool) -> tuple[str, int]:
    future = [s for s in context if s.future]
    rest = [s for s in context if not s.future]
    parts = ["# Generated by cellship: the %%train cell plus what it needs from earlier cells.",
             "# Edit the notebook, not this file."]
    parts += list(dict.fromkeys(s.source.strip() for s in future))
    parts += ["import cellship.inside.bootstrap as _cellship_bootstrap",
              f"_cellship_bootstrap.start(globals(), shipped={has_shipped!r})", ""]
    if rest:
        parts.append("# ---- from earlier cells ----")
        current = None
        for stmt in rest:
            if stmt.cell != current:
                parts.append(f"# cell [{stmt.cell}]")
                current = stmt.cell
            text = _render_statement(stmt, namespace)
            if stmt.kind == "definition" and parts[-1] and not parts[-1].startswith("# cell"):
                text = "\n" + text  # a blank line before each def/class, as PEP 8 reads
            parts.append(text)
        parts.append("")
    parts.append("# ---- the %%train cell ----")
    header = "\n".join(parts) + "\n"
    first_line = header.count("\n") + 1
    return header + cell.rstrip("\n") + "\n", first_line


def _take_future(source: str, cell: int = 0) -> tuple[list[Statement], str]:
    """Split off ``from __future__`` imports: they must come first in a module, so they
    are rendered above the bootstrap lines; their own lines are blanked, keeping line
    numbers."""
    tree = ast.parse(source)
    lines = _split_lines(source)
    future: list[Statement] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            future.append(Statement(cell=cell, line=node.lineno, kind="import", source=text,
                                    defines=frozenset(), uses=frozenset(), future=True))
            for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                lines[i] = ""
    return future, "\n".join(lines)


def program_from_script(source: str, filename: str) -> Program:
    """A program for ``cellship train FILE.py``: the script as it is, with the bootstrap."""
    _check_text(source, filename)
    try:
        ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise ProgramError(f"Syntax error in {filename}, line {err.lineno}: {err.msg}. "
                           "Nothing was started.") from None
    except (RecursionError, MemoryError):
        raise ProgramError(_TOO_DEEP.replace("The cell", filename)) from None
    future, body = _take_future(source)
    text, first = _render(future, body, None, False)
    _check_compiles(text, first, filename)
    return Program(source=text, cell_first_line=first, context=tuple(future))
