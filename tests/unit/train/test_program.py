"""cellship.train.program: shipping a %%train cell plus what it needs from earlier cells."""

from __future__ import annotations

import threading

import cloudpickle
import pytest

from cellship.errors import ProgramError
from cellship.train.program import HistoryCell, build_program, classify_cell, program_from_script

BOOTSTRAP_IMPORT = "import cellship.inside.bootstrap as _cellship_bootstrap"


def cells(*sources: str) -> list[HistoryCell]:
    return [HistoryCell(i + 1, s) for i, s in enumerate(sources)]


def context_sources(program) -> list[str]:
    return [s.source for s in program.context]


def cell_part(program) -> str:
    """The program text from the first line of the cell on."""
    return "\n".join(program.source.splitlines()[program.cell_first_line - 1:])


def context_part(program) -> str:
    return "\n".join(program.source.splitlines()[:program.cell_first_line - 1])


# -- imports, definitions, constants ---------------------------------------------------------

def test_imports_plain_aliased_and_from_are_shipped_when_used():
    history = cells("import os\nimport json as j\nfrom collections import OrderedDict\n"
                    "from os import path as osp\nimport sys\n")
    program = build_program("print(os.sep, j.dumps(1), OrderedDict(), osp.join('a'))\n", history, {})
    assert context_sources(program) == ["import os", "import json as j",
                                        "from collections import OrderedDict",
                                        "from os import path as osp"]
    assert "import sys" not in program.source
    assert [s.kind for s in program.context] == ["import"] * 4


def test_unrelated_statements_are_left_out():
    history = cells("import os\nimport re\nA = 1\nB = 2\n",
                    "def used():\n    return A\n\ndef unused():\n    return re.compile(B)\n")
    program = build_program("print(used())\n", history, {"A": 1, "B": 2})
    text = context_part(program)
    assert "def used" in text and "A = 1" in text
    for absent in ("import os", "import re", "B = 2", "def unused"):
        assert absent not in text


def test_function_class_with_bases_and_decorators(run_program):
    history = cells(
        "class Base:\n    greeting = 'hi'\n",
        "def register(cls):\n    cls.registered = True\n    return cls\n\n"
        "@register\nclass Model(Base):\n    def hello(self):\n        return self.greeting\n",
    )
    program = build_program("result = (Model().hello(), Model.registered)\n", history, {})
    kinds = {s.source.splitlines()[0]: s.kind for s in program.context}
    assert kinds == {"class Base:": "definition", "def register(cls):": "definition",
                     "@register": "definition"}
    decorated = [s for s in program.context if s.source.startswith("@register")][0]
    assert decorated.line == 5  # the decorator line, not the `class` line
    assert decorated.defines == frozenset({"Model"})
    assert run_program(program)["result"] == ("hi", True)


def test_constants_tuple_unpacking_and_values_from_namespace(run_program):
    # LR's source is an expression; the kernel's current value is what gets shipped.
    history = cells("H, W = 8, 8\nLR = 0.1 * 2\nNAME = 'digits'\nLAYERS = [H * W, 10]\n")
    namespace = {"H": 8, "W": 8, "LR": 0.2, "NAME": "digits", "LAYERS": [64, 10]}
    program = build_program("result = (H, W, LR, NAME, LAYERS)\n", history, namespace)
    text = context_part(program)
    assert "H = 8\nW = 8" in text
    assert "LR = 0.2" in text and "0.1 * 2" not in text
    assert "NAME = 'digits'" in text
    assert "LAYERS = [64, 10]" in text
    assert all(s.kind == "constant" for s in program.context)
    assert run_program(program)["result"] == (8, 8, 0.2, "digits", [64, 10])


def test_constant_value_not_a_literal_keeps_its_source():
    history = cells("import math\nPI = math.pi\nTWO = PI\n")
    # A value that does not read back as a literal (an object) keeps the statement's text.
    program = build_program("print(TWO)\n", history, {"PI": 3.14, "TWO": object(), "math": None})
    text = context_part(program)
    assert "TWO = PI" in text
    assert "PI = 3.14" in text
    assert "import math" in text  # PI's source used math


def test_transitive_dependencies_constant_chain_and_calls(run_program):
    history = cells(
        "import math\nBASE = 3\nSCALE = BASE * 2\nUNUSED = 99\n",
        "def helper(x):\n    return x * SCALE\n",
        "def entry(y):\n    return helper(y) + math.floor(1.5)\n",
    )
    program = build_program("result = entry(2)\n", history, None)
    text = context_part(program)
    for needed in ("import math", "BASE = 3", "SCALE = BASE * 2", "def helper", "def entry"):
        assert needed in text
    assert "UNUSED" not in text
    # Execution order of the notebook is kept: BASE before SCALE before helper before entry.
    order = [text.index(s) for s in ("BASE = 3", "SCALE = BASE * 2", "def helper", "def entry")]
    assert order == sorted(order)
    assert run_program(program)["result"] == 13


def test_last_definition_wins(run_program):
    history = cells("def f():\n    return 1\n", "K = 1\n", "def f():\n    return 2\n", "K = 5\n")
    program = build_program("result = (f(), K)\n", history, None)
    assert [(s.cell, s.line) for s in program.context] == [(3, 1), (4, 1)]
    assert "return 1" not in program.source
    assert run_program(program)["result"] == (2, 5)


def test_redefinition_as_runtime_code_is_reported():
    history = cells("K = 1\n", "K = compute_k()\n")
    with pytest.raises(ProgramError, match=r"`K` is computed at run time \(cell \[2\], line 1"):
        build_program("print(K)\n", history, {"K": 3})


def test_try_except_importerror_block_is_a_definition(run_program):
    history = cells("try:\n    import no_such_module_cellship as yaml\nexcept ImportError:\n"
                    "    yaml = None\n")
    [stmt] = classify_cell(history[0])
    assert stmt.kind == "definition"
    assert "yaml" in stmt.defines
    program = build_program("result = yaml\n", history, {"yaml": None})
    assert "except ImportError:" in program.source
    assert run_program(program)["result"] is None


def test_star_import_is_kept_and_makes_unknown_names_acceptable(run_program):
    history = cells("from math import *\nimport os\n")
    [star, plain] = classify_cell(history[0])
    assert star.star_import and not plain.star_import
    program = build_program("result = sqrt(16)\n", history, {"sqrt": None})
    assert context_sources(program) == ["from math import *"]
    assert run_program(program)["result"] == 4.0


# -- scoping: what the cell needs ------------------------------------------------------------

def test_function_locals_and_comprehension_variables_are_not_needed():
    # Each of these names exists in history as run-time code: if any were reported as
    # needed, build_program would refuse the cell.
    history = cells("i = load()\nq = load()\nz = load()\nrow = load()\nG = 1\n")
    cell = ("def f(z):\n    q = z + 1\n    return q + G\n"
            "total = sum(i * i for i in range(3))\n"
            "grid = [[row for row in range(2)] for _ in range(2)]\n"
            "lookup = {i: q for i, q in enumerate('ab')}\n"
            "print(f(1), total, grid, lookup, (lambda row: row)(1))\n")
    namespace = {"i": 1, "q": 2, "z": 3, "row": 4, "G": 1}
    program = build_program(cell, history, namespace)
    assert context_sources(program) == ["G = 1"]


def test_classify_cell_uses_exclude_parameters_locals_and_comprehension_names():
    [stmt] = classify_cell(HistoryCell(1, "def f(x):\n    y = [k for k in x]\n"
                                          "    return len(y) + OFFSET\n"))
    assert stmt.kind == "definition"
    assert stmt.defines == frozenset({"f"})
    # builtins are filtered later, by build_program
    assert stmt.uses == frozenset({"OFFSET", "len"})


def test_builtins_and_dunder_names_are_not_reported():
    program = build_program("print(len(range(3)), __name__, Exception, sorted([2, 1]))\n", (),
                            {"In": [], "Out": {}, "_": None})
    assert program.context == ()


def test_names_bound_in_the_cell_are_not_needed():
    history = cells("model = build()\n")
    program = build_program("model = 3\nprint(model)\n", history, {"model": object()})
    assert program.context == ()


def test_name_read_before_rebinding_in_the_cell_is_shipped(run_program):
    history = cells("N = 10\n")
    program = build_program("N = N * 2\nresult = N\n", history, {"N": 10})
    assert run_program(program)["result"] == 20


def test_uses_inside_class_bodies_and_nested_functions_are_found():
    history = cells("K = 3\nL = 4\n")
    cell = "class M:\n    k = K\n\ndef outer():\n    def inner():\n        return L\n    return inner\n"
    program = build_program(cell, history, None)
    assert context_sources(program) == ["K = 3", "L = 4"]


def test_name_only_in_namespace_is_reported():
    with pytest.raises(ProgramError, match="`q` exists in the kernel but no earlier cell defines it"):
        build_program("print(q)\n", (), {"q": 1})


def test_unknown_name_without_namespace_is_left_to_python():
    program = build_program("print(undefined_name)\n", (), None)
    assert program.context == ()


# -- earlier %%train cells and IPython syntax ------------------------------------------------

def test_previous_train_cells_contribute_nothing():
    train_cell = HistoryCell(4, "get_ipython().run_cell_magic('train', '--workers 2', "
                                "'Z = 1\\ndef g():\\n    return 2\\n')\n")
    assert classify_cell(train_cell) == []
    program = build_program("print(Z, g)\n", [train_cell], None)
    assert program.context == ()
    assert "Z = 1" not in program.source


def test_cells_that_do_not_parse_contribute_nothing():
    assert classify_cell(HistoryCell(1, "def broken(:\n")) == []


def test_ipython_lines_in_the_cell_are_dropped_with_notes_and_lines_kept():
    cell = ("a = 1\n"
            "get_ipython().system('pip install x')\n"
            "get_ipython().run_line_magic('matplotlib', 'inline')\n"
            "b = 2\n"
            "raise ValueError('line five')\n")
    program = build_program(cell, (), None)
    assert "pip install" not in program.source
    assert "matplotlib" not in program.source
    assert len(program.notes) == 2
    assert program.notes[0].startswith("line 2: `!pip install x`")
    assert program.notes[1].startswith("line 3: `%matplotlib inline`")
    lines = program.source.splitlines()
    first = program.cell_first_line
    assert lines[first - 1] == "a = 1"
    assert lines[first - 1 + 3] == "b = 2"
    assert lines[first - 1 + 4] == "raise ValueError('line five')"
    compile(program.source, "program.py", "exec")


def test_multiline_ipython_statement_keeps_later_line_numbers():
    cell = "a = 1\nget_ipython().run_line_magic(\n    'matplotlib',\n    'inline')\nb = 2\n"
    program = build_program(cell, (), None)
    assert program.source.splitlines()[program.cell_first_line - 1 + 4] == "b = 2"
    compile(program.source, "program.py", "exec")


def test_ipython_statements_in_history_are_skipped():
    stmts = classify_cell(HistoryCell(1, "get_ipython().run_line_magic('load_ext', 'cellship')\n"
                                         "files = get_ipython().getoutput('ls')\nA = 1\n"))
    assert [(s.source, s.kind) for s in stmts] == [("A = 1", "constant")]


def test_ipython_syntax_inside_an_expression_is_refused():
    with pytest.raises(ProgramError, match="Line 2 of the cell uses IPython syntax"):
        build_program("a = 1\nx = get_ipython().getoutput('ls')\n", (), None)


def test_syntax_error_names_the_cell_line():
    with pytest.raises(ProgramError) as info:
        build_program("a = 1\n\nif a\n    pass\n", (), None)
    message = str(info.value)
    assert "line 3 of the cell" in message
    assert "nothing was started" in message


# -- values computed at run time, and --ship -------------------------------------------------

def test_runtime_value_is_reported_with_cell_and_ship_fix():
    np = pytest.importorskip("numpy")
    history = [HistoryCell(3, "import numpy as np\ndata = np.arange(10)\n")]
    with pytest.raises(ProgramError) as info:
        build_program("print(data.sum())\n", history, {"np": np, "data": np.arange(10)})
    message = str(info.value)
    assert "`data`" in message
    assert "cell [3], line 2" in message
    assert "--ship data" in message


def test_several_runtime_values_are_all_named_in_one_fix():
    history = cells("a = load()\nb = load()\n")
    with pytest.raises(ProgramError, match="--ship a,b"):
        build_program("print(a, b)\n", history, {"a": 1, "b": 2})


def test_ship_pickles_the_value_with_cloudpickle(run_program):
    np = pytest.importorskip("numpy")
    history = [HistoryCell(3, "import numpy as np\ndata = np.arange(10)\n")]
    value = np.arange(10)
    program = build_program("result = data.sum()\n", history, {"np": np, "data": value},
                            ship=["data"])
    assert set(program.shipped) == {"data"}
    assert np.array_equal(cloudpickle.loads(program.shipped["data"]), value)
    assert "shipped=True" in program.source
    assert "np.arange" not in program.source
    ns = run_program(program, {"data": cloudpickle.loads(program.shipped["data"])})
    assert ns["result"] == 45
    assert run_program.calls == [True]


def test_ship_a_function_defined_in_the_kernel_round_trips():
    def scale(x):
        return x * 3

    program = build_program("print(scale(2))\n", (), {"scale": scale}, ship=["scale"])
    assert cloudpickle.loads(program.shipped["scale"])(2) == 6


@pytest.mark.parametrize("value, type_name", [(threading.Lock(), "lock"),
                                              ((i for i in range(3)), "generator")])
def test_unpicklable_value_is_named(value, type_name):
    with pytest.raises(ProgramError) as info:
        build_program("print(thing)\n", (), {"thing": value}, ship=["thing"])
    message = str(info.value)
    assert "`thing`" in message and type_name in message
    assert "cannot be pickled" in message


def test_ship_name_missing_from_namespace():
    with pytest.raises(ProgramError, match="`nope`: there is no variable of that name"):
        build_program("print(1)\n", (), {"x": 1}, ship=["nope"])


def test_ship_without_a_kernel_namespace_is_refused():
    with pytest.raises(ProgramError, match="--ship needs a kernel"):
        build_program("print(x)\n", (), None, ship=["x"])


def test_no_ship_means_bootstrap_without_shipped_values():
    program = build_program("print(1)\n", (), {})
    assert program.shipped == {}
    assert "shipped=False" in program.source


# -- the program text ------------------------------------------------------------------------

def test_future_import_goes_before_the_bootstrap():
    history = cells("from __future__ import annotations\n", "def f(x: int) -> int:\n    return x\n")
    # `annotations` referenced by name makes the __future__ statement part of the context.
    program = build_program("print(annotations, f(1))\n", history, None)
    lines = program.source.splitlines()
    future = lines.index("from __future__ import annotations")
    assert future < lines.index(BOOTSTRAP_IMPORT)
    compile(program.source, "program.py", "exec")


def test_future_import_in_history_is_shipped_for_the_definitions_it_affects(run_program):
    history = cells("from __future__ import annotations\n",
                    "def f(x: NotYetDefined) -> int:\n    return 1\n")
    program = build_program("result = f(0)\n", history, {})
    assert "from __future__ import annotations" in program.source
    assert run_program(program)["result"] == 1


def test_future_import_in_the_cell_compiles():
    program = build_program("from __future__ import annotations\nx: int = 1\n", (), None)
    compile(program.source, "program.py", "exec")


def test_program_compiles_and_cell_first_line_points_at_the_cell():
    history = cells("import os\nA = 1\n", "def f():\n    return A\n")
    cell = "first_line_of_cell = f()\nprint(os.sep, first_line_of_cell)\n"
    program = build_program(cell, history, {"A": 1})
    compile(program.source, "program.py", "exec")
    lines = program.source.splitlines()
    assert lines[program.cell_first_line - 1] == "first_line_of_cell = f()"
    assert cell_part(program) == cell.rstrip("\n")
    assert lines.index(BOOTSTRAP_IMPORT) < lines.index("import os")
    assert "_cellship_bootstrap.start(globals(), shipped=False)" in lines


def test_cell_first_line_matches_traceback_line_numbers(run_program):
    program = build_program("x = 1\n1 / 0\n", cells("A = 1\n"), None)
    with pytest.raises(ZeroDivisionError) as info:
        run_program(program)
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == "program.py"
    assert tb.tb_lineno == program.cell_first_line + 1  # the cell's line 2


def test_program_from_script():
    program = program_from_script("import os\nprint(os.sep)\n", "train.py")
    compile(program.source, "train.py", "exec")
    assert program.context == ()
    assert program.source.splitlines()[program.cell_first_line - 1] == "import os"
    assert BOOTSTRAP_IMPORT in program.source


def test_program_from_script_syntax_error_names_file_and_line():
    with pytest.raises(ProgramError, match=r"Syntax error in train\.py, line 2"):
        program_from_script("x = 1\ndef (:\n", "train.py")


def test_program_from_script_with_future_import_compiles():
    program = program_from_script("from __future__ import annotations\nprint(1)\n", "s.py")
    compile(program.source, "s.py", "exec")


def test_unicode_line_separator_inside_a_string_is_kept():
    program = build_program('s = "a\u2028b"\n', (), None)
    compile(program.source, "program.py", "exec")


def test_code_the_compiler_refuses_is_a_program_error_with_the_cell_line():
    # ast accepts it, symtable (the compiler) does not: still a sentence, not a traceback.
    with pytest.raises(ProgramError, match="line 3 of the cell: .*nonlocal declaration"):
        build_program("x = 1\nnonlocal x\n", (), None, line_offset=1)
