"""The package's shape, checked: no import cycles, and objects keep their own state.

docs/architecture.md promises a module map without cycles (not even under `TYPE_CHECKING`)
and that no engine module assigns the fields of an object defined in another module; these
tests read the source (its AST), so a change that breaks either promise fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flowmusic_async

PACKAGE = Path(flowmusic_async.__file__).parent

# The modules that run jobs: who owns which state matters most here (docs/architecture.md).
ENGINE_MODULES = (
    "_balances",
    "_batch",
    "_handles",
    "_host",
    "_paid_post",
    "_poller",
    "_reconcile",
    "_scheduler",
    "_spend",
    "_submission",
    "_submitter",
    "_tracker",
    "_waiting",
    "_watch",
    "_webhooks",
)

# Third-party objects whose documented API is an attribute to set: anyio's cancel scopes
# (`deadline`, `shield`) and capacity limiters (`total_tokens`).
THIRD_PARTY_SETTERS = {"deadline", "shield", "total_tokens"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module `name` imports, at any level of the file (TYPE_CHECKING blocks and
    imports inside functions included: a lazy import is still a dependency)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    found.add(candidate)  # `from . import _logs`: the module itself
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the list of modules around it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycle_not_even_under_type_checking() -> None:
    """A cycle means two modules each reach into the other: the boundary is in the wrong place."""
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # The package's __init__ re-exports everything; a module importing a public name from
    # the package root would close a cycle through it, which is what this also catches.
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above is only worth something if it can fail."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _classes_defined(tree: ast.Module) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def _own_fields(tree: ast.Module) -> set[str]:
    """The fields this module's classes declare: set on `self`, annotated, or in __slots__."""
    fields: set[str] = set()
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    fields.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                fields.add(node.target.id)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                fields.update(
                    elt.value
                    for elt in ast.walk(node.value)
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
                )
    return fields


def _local_types(function: ast.AST) -> dict[str, str]:
    """Names in a function bound to an instance of a class by name: `x = Cls(...)`, `x: Cls`."""
    types: dict[str, str] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        types[target.id] = func.id
        elif isinstance(node, (ast.arg, ast.AnnAssign)):
            annotation = node.annotation
            name = node.arg if isinstance(node, ast.arg) else getattr(node.target, "id", None)
            if name is not None and isinstance(annotation, ast.Name):
                types[name] = annotation.id
            elif name is not None and isinstance(annotation, ast.Constant):
                types[name] = str(annotation.value)
    return types


def _foreign_assignments(source: str) -> list[str]:
    """`obj.field = ...` where `obj` is not `self` nor an instance of a class of this module.

    The class of `obj` is read from the function when it says (`obj = Cls(...)`, `obj: Cls`);
    otherwise the field must be one this module's own classes declare.
    """
    tree = ast.parse(source)
    own = _classes_defined(tree)
    own_fields = _own_fields(tree)
    problems: list[str] = []
    functions = [
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for function in functions:
        types = _local_types(function)
        for node in ast.walk(function):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if not isinstance(element, ast.Attribute):
                        continue
                    base = element.value
                    if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                        continue
                    known = types.get(base.id) if isinstance(base, ast.Name) else None
                    if known is not None and known in own:
                        continue
                    if known is None and element.attr in own_fields:
                        continue
                    if element.attr in THIRD_PARTY_SETTERS:
                        continue
                    problems.append(f"line {element.lineno}: {ast.unparse(element)} = ...")
    return problems


def test_no_engine_module_assigns_the_fields_of_another_modules_objects() -> None:
    """An object's state changes through its own methods, so each change is written once."""
    problems = {
        name: found
        for name in ENGINE_MODULES
        if (found := _foreign_assignments((PACKAGE / f"{name}.py").read_text(encoding="utf-8")))
    }
    assert problems == {}


def test_the_assignment_check_catches_a_foreign_field() -> None:
    """The check above is only worth something if it can fail."""
    source = (
        "class Mine:\n    pass\n"
        "def f(sub, mine: Mine):\n    sub.abandoned = True\n    mine.ok = 1\n"
        "def g(self):\n    self.x = 1\n    self.other.y = 2\n"
    )
    assert _foreign_assignments(source) == [
        "line 4: sub.abandoned = ...",
        "line 8: self.other.y = ...",
    ]


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _table_after(heading: str) -> list[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| module", "| concept"))
    ]


def test_the_module_map_names_every_module_once() -> None:
    """docs/architecture.md says what each module is for: a module added without a row (or a
    row left behind by a module that went) fails here."""
    rows = "\n".join(_table_after("## Modules"))
    named = {name for cell in rows.split("|") for name in cell.split("`") if name.endswith(".py")}
    modules = {path.name for path in PACKAGE.glob("*.py")}
    assert modules - named == set()  # every module has its sentence
    assert named - modules == set()  # and no sentence outlives its module


def test_a_newcomer_holds_at_most_seventeen_concepts_each_with_an_owner() -> None:
    """The engine's concepts fit on one table, each with the one owner that changes it."""
    rows = _table_after("## What a newcomer must hold")
    assert 0 < len(rows) <= 17
    assert all(len([cell for cell in row.split("|") if cell.strip()]) == 3 for row in rows)
