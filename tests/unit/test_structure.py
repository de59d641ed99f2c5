"""The package's layers, held against the code: no import cycle between its parts, no queue
(Dramatiq) and no database driver or SQL text in the HTTP layer or the domain, and no private
name imported from another module. Read from the source (ast), so lazy imports count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import appliance

ROOT = Path(appliance.__file__).parent
SQL = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|WITH RECURSIVE|CREATE|ALTER) "
)


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = modules()


def part(module: str) -> str:
    """The part a module belongs to: ``appliance.api.jobs`` -> ``api``."""
    return module.split(".")[1] if module.count(".") else "appliance"


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.Module, module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every import outside ``if TYPE_CHECKING:`` blocks."""
    skip = {id(n) for block in ast.walk(tree) if _type_checking(block) for n in ast.walk(block)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, tree in MODULES.items():
        for target, _ in imports(tree, module):
            if target.startswith("appliance.") and part(target) != part(module):
                graph.setdefault(part(module), set()).add(part(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == trail[0]:
                found.append([*trail, nxt])
            elif nxt not in trail and nxt > trail[0]:  # each cycle once, from its least part
                walk(nxt, [*trail, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_no_import_cycle_between_the_parts_of_the_package():
    assert cycles(part_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def in_parts(*parts: str) -> dict[str, ast.Module]:
    return {m: t for m, t in MODULES.items() if part(m) in parts}


def test_the_http_layer_and_the_domain_import_no_queue_and_no_database_driver():
    wrong = [
        (module, target)
        for module, tree in in_parts("api", "conversions").items()
        for target, _ in imports(tree, module)
        if target.split(".")[0] in ("dramatiq", "psycopg", "psycopg_pool")
        or target.startswith("appliance.jobs")
        or (part(module) == "api" and target.startswith("appliance.db"))
    ]
    assert wrong == []


def test_sql_text_lives_only_in_the_database_layer():
    wrong = [
        (module, node.value[:40])
        for module, tree in MODULES.items()
        if part(module) != "db"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]
    assert wrong == []


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        (module, target, name)
        for module, tree in MODULES.items()
        for target, names in imports(tree, module)
        if target.startswith("appliance")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert wrong == []


CORE = ("appliance.settings", "appliance.errors", "appliance.logs")


def test_metrics_are_a_leaf_that_imports_only_the_core():
    wrong = [
        (module, target)
        for module, tree in in_parts("metrics").items()
        for target, _ in imports(tree, module)
        if target.startswith("appliance.")
        and part(target) != "metrics"
        and not target.startswith(CORE)
    ]
    assert wrong == []


def test_engines_know_no_database_queue_or_http():
    wrong = [
        (module, target)
        for module, tree in in_parts("engines").items()
        for target, _ in imports(tree, module)
        if target.startswith(("appliance.db", "appliance.jobs", "appliance.api"))
        or target.split(".")[0] in ("psycopg", "dramatiq", "litestar")
    ]
    assert wrong == []
