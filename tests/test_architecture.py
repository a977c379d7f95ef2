"""The dependency rule, enforced by reading the source (no import-linter dependency).

Layers: ``dhcp4`` (wire format) imports nothing of ours; ``onie`` (ONIE library) imports only
``dhcp4``; ``pxe`` (boot services library) imports only ``dhcp4``, never ``onie`` or
``provision``; ``provision`` (the application) sits on top and may import all of them.

An ``import`` inside a function hides a dependency (and usually a cycle) from the reader and from
this test, so it is allowed only for an optional heavy third-party dependency, named in a comment
on the import's line or the line above::

    # optional heavy dependency: pyghmi (IPMI only)
    from pyghmi.ipmi import command

Each test lists every offending file:line at once, so one run shows the whole job.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Our top-level packages, and which of them each one may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "dhcp4": frozenset(),
    "onie": frozenset({"dhcp4"}),
    "pxe": frozenset({"dhcp4"}),
    "provision": frozenset({"dhcp4", "onie", "pxe"}),
}
OURS = frozenset(ALLOWED)

HEAVY_COMMENT = re.compile(r"#\s*optional heavy dependency:\s*([A-Za-z_][\w.]*)")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name of what is imported
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names; relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    # In a package's __init__, level 1 is the package itself; in a module, it is its parent.
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(path, node.lineno, alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append(Import(path, node.lineno, _resolve(node, module, is_package), in_function))
        elif (
            # importlib.import_module("provision.x"): a dependency all the same.
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value, in_function))
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def _sources() -> list[Path]:
    return sorted(p for package in ALLOWED for p in (ROOT / package).rglob("*.py"))


def test_the_packages_exist() -> None:
    # Guard against a rename that would make the checks below pass vacuously.
    for package in ALLOWED:
        assert (ROOT / package / "__init__.py").is_file(), package
    assert len(_sources()) > 50


def test_layers_import_only_what_they_may() -> None:
    offences = []
    for path in _sources():
        layer = path.relative_to(ROOT).parts[0]
        for imp in _imports(path):
            top = imp.module.split(".")[0]
            if top in OURS and top != layer and top not in ALLOWED[layer]:
                offences.append(f"{imp.where}: {layer} imports {imp.module}")
    allowed = "; ".join(f"{k} -> {', '.join(sorted(v)) or 'nothing of ours'}" for k, v in ALLOWED.items())
    assert not offences, f"layering broken ({allowed}):\n" + "\n".join(offences)


def test_no_import_inside_a_function_unless_optional_and_heavy() -> None:
    offences = []
    for path in _sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        for imp in _imports(path):
            if not imp.in_function:
                continue
            top = imp.module.split(".")[0]
            named = {
                m.group(1).split(".")[0]
                for text in lines[max(imp.line - 2, 0) : imp.line]
                if (m := HEAVY_COMMENT.search(text))
            }
            if top in named and top not in OURS:
                continue
            offences.append(f"{imp.where}: import of {imp.module} inside a function")
    assert not offences, (
        "imports inside functions hide dependencies; hoist them to module level (fix the layering if that "
        "makes a cycle), or, for an optional heavy third-party dependency only, say so on the line or the "
        "line above: '# optional heavy dependency: <package> (why)'\n" + "\n".join(offences)
    )
