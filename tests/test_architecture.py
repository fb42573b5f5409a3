"""Architecture rules, checked on toykit's source code without importing it.

1. No private helper crosses a module boundary. A private name starts with one underscore and
   is not a dunder (``_resolve``, not ``__init__``). Every ``.py`` file is one module: a
   subpackage such as ``toykit/grading/`` is several modules, and its ``__init__.py`` is one more.
   A module must not

   - import a private name from another toykit module: ``from toykit.x import _y``;
   - reach a private name through another toykit module: ``import toykit.x as m`` or
     ``from toykit import x``, then ``m._y`` or ``x._y``;
   - use a private attribute of an object, ``obj._y`` with ``obj`` not ``self`` or ``cls``, when
     ``_y`` is defined (as a function, method, class, class attribute, ``self._y`` attribute or
     module-level name) in another toykit module and nowhere in this one.

   A module's own privates used on its own objects are fine, and so are other libraries'
   privates (``torch._C``, ``module._modules``): they are not toykit names. What one module
   needs from another gets a public, documented name in its proper home instead.

2. The import graph of toykit's modules has no cycle. Only imports that run when a module is
   imported count: top-level ones (also inside top-level ``if``/``try``/``with`` and class
   bodies), not those inside functions or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toykit"

def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and len(name) > 1


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass
class Module:
    name: str
    path: str  # relative to the repository root, for messages
    tree: ast.Module
    is_package: bool
    defined: set[str] = field(default_factory=set)  # private names this module defines


@cache
def _modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = Module(_module_name(path), path.relative_to(ROOT).as_posix(), tree, path.name == "__init__.py")
        module.defined = _private_definitions(tree)
        modules[module.name] = module
    return modules


def _private_definitions(tree: ast.Module) -> set[str]:
    """Private functions, methods, classes, module and class attributes, and ``self._x`` attributes."""
    names: set[str] = set()

    def assigned(targets: list[ast.expr], in_body: bool) -> None:
        for target in targets:
            if isinstance(target, ast.Name) and in_body:
                names.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                if target.value.id in ("self", "cls"):
                    names.add(target.attr)
            elif isinstance(target, (ast.Tuple, ast.List)):
                assigned(list(target.elts), in_body)

    def visit(node: ast.AST, in_body: bool) -> None:
        # in_body: statements of the module or of a class body, whose names are attributes
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                visit(child, in_body=isinstance(child, ast.ClassDef))
                continue
            if isinstance(child, ast.Assign):
                assigned(child.targets, in_body)
            elif isinstance(child, (ast.AnnAssign, ast.AugAssign)):
                assigned([child.target], in_body)
            # if/try/with blocks at module or class level still bind module or class names
            visit(child, in_body=in_body and isinstance(child, (ast.If, ast.Try, ast.With, ast.ExceptHandler)))

    visit(tree, in_body=True)
    return {name for name in names if _is_private(name)}


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_toykit(name: str) -> bool:
    return name == "toykit" or name.startswith("toykit.")


def _violations_in(module: Module, modules: dict[str, Module]) -> list[tuple[int, str]]:
    """(line, name) of each private name that ``module`` takes from another toykit module."""
    elsewhere = set().union(*(m.defined for m in modules.values() if m is not module)) - module.defined
    found: list[tuple[int, str]] = []
    toykit_aliases: dict[str, str] = {}  # local name -> toykit module it is bound to
    other_aliases: set[str] = set()  # local names bound to modules of other libraries

    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    target, local = alias.name, alias.asname
                else:  # `import a.b.c` binds `a`
                    target = local = alias.name.split(".")[0]
                if _is_toykit(target):
                    toykit_aliases[local] = target
                else:
                    other_aliases.add(local)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                local = alias.asname or alias.name
                submodule = f"{source}.{alias.name}"
                if not _is_toykit(source):
                    other_aliases.add(local)  # a module or a name: either way, not toykit's
                elif submodule in modules:
                    toykit_aliases[local] = submodule
                elif _is_private(alias.name) and source != module.name:
                    found.append((node.lineno, alias.name))

    def module_of(expr: ast.expr) -> str | None:
        """The toykit module an expression names (``m``, ``toykit.x``), or None."""
        if isinstance(expr, ast.Name):
            return toykit_aliases.get(expr.id)
        if isinstance(expr, ast.Attribute):
            parent = module_of(expr.value)
            if parent is not None and f"{parent}.{expr.attr}" in modules:
                return f"{parent}.{expr.attr}"
        return None

    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        owner = module_of(node.value)
        if owner is not None:
            if owner != module.name:
                found.append((node.lineno, node.attr))
        elif isinstance(node.value, ast.Name) and node.value.id in ({"self", "cls"} | other_aliases):
            continue
        elif node.attr in elsewhere:
            found.append((node.lineno, node.attr))
    return sorted(set(found))


def test_no_private_name_crosses_a_module_boundary():
    modules = _modules()
    violations = [(m.path, line, name) for m in modules.values() for line, name in _violations_in(m, modules)]
    assert not violations, (
        f"{len(violations)} private cross-module uses:\n"
        + "\n".join(f"{path}:{line} {name}" for path, line, name in violations)
        + "\nGive what another module needs a public, documented name in its proper home."
    )


def test_the_rule_sees_each_kind_of_crossing():
    """The checker itself: each kind of crossing in the docstring is found, and the allowed uses are not."""
    owner = ast.parse("def _helper(): ...\n_LIMIT = 3\nclass Box:\n    def _fill(self): self._size = 1\n")
    user = ast.parse(
        "import torch\nimport toykit.owner as m\nfrom toykit import owner\nfrom toykit.owner import _helper\n"
        "m._LIMIT\nowner._anything\nbox._fill()\nbox._size\nself._fill()\ntorch._C\nmodel._modules\n"
        "def _own(): ...\nthing._own()\n"
    )
    modules = {
        "toykit.owner": Module("toykit.owner", "owner.py", owner, False, _private_definitions(owner)),
        "toykit.user": Module("toykit.user", "user.py", user, False, _private_definitions(user)),
    }
    assert _violations_in(modules["toykit.user"], modules) == [
        (4, "_helper"), (5, "_LIMIT"), (6, "_anything"), (7, "_fill"), (8, "_size")
    ]


def _runs_at_import(body: list[ast.stmt]):
    """The statements of a module that run when it is imported, nested blocks included."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING") and not (
                isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"
            ):
                yield from _runs_at_import(node.body)
            yield from _runs_at_import(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _runs_at_import(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _runs_at_import(node.body)


def _imports_at_import_time(module: Module, modules: dict[str, Module]) -> set[str]:
    """The toykit modules that importing ``module`` runs.

    Importing ``toykit.a.b`` also runs ``toykit.a``'s ``__init__``, so that counts too, except
    for the importer's own enclosing packages: Python has already started those, and only a name
    taken from one of them (``from toykit.a import name``) needs it to have run that far.
    """
    ancestors = {".".join(module.name.split(".")[:i]) for i in range(1, module.name.count(".") + 1)}
    needed: set[str] = set()
    for node in _runs_at_import(module.tree.body):
        if isinstance(node, ast.Import):
            targets = [(alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            targets = [(f"{source}.{a.name}", False) if f"{source}.{a.name}" in modules else (source, True)
                       for a in node.names]
        else:
            continue
        for target, takes_a_name in targets:
            parts = target.split(".")
            for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if name in modules and (name not in ancestors or (takes_a_name and name == target)):
                    needed.add(name)
    return needed - {module.name}


def _import_graph() -> dict[str, set[str]]:
    """Module -> the toykit modules it imports at import time."""
    modules = _modules()
    return {name: _imports_at_import_time(module, modules) for name, module in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_import_graph_is_acyclic():
    graph = _import_graph()
    assert graph["toykit"] >= {"toykit.transformer", "toykit.cache"}  # the graph is really built
    cycles = _cycles(graph)
    assert not cycles, f"{len(cycles)} import cycles among toykit modules: " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_import_graph_counts_only_what_runs_at_import():
    sources = {
        "toykit.pkg": "from toykit.pkg.a import f\n",
        "toykit.pkg.a": (
            "from typing import TYPE_CHECKING\nfrom toykit.pkg import b\n"
            "if TYPE_CHECKING:\n    from toykit.other import T\ndef f():\n    import toykit.other\n"
        ),
        "toykit.pkg.b": "from toykit.pkg import CONSTANT\n",  # a name from its package's __init__
        "toykit.other": "",
    }
    modules = {}
    for name, source in sources.items():
        tree = ast.parse(source)
        modules[name] = Module(name, name, tree, name == "toykit.pkg", _private_definitions(tree))
    graph = {name: _imports_at_import_time(module, modules) for name, module in modules.items()}
    assert graph == {"toykit.pkg": {"toykit.pkg.a"}, "toykit.pkg.a": {"toykit.pkg.b"},
                     "toykit.pkg.b": {"toykit.pkg"}, "toykit.other": set()}
    assert _cycles(graph) == [["toykit.pkg", "toykit.pkg.a", "toykit.pkg.b"]]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
