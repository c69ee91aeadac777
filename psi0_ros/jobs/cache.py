"""What a main-job step's output depends on, found from the code itself (ROS-free).

A step's sources are the modules of psi0_ros and training/ that its entry modules import,
transitively, read from the import statements (ast, also those inside functions: the commands
and jobs import their heavy dependencies lazily), plus the config/ files those modules name (a
string constant equal to a file name in config/, e.g. "record.yaml"), plus msg/*.msg when the
generated messages are imported (the bags' types). A change to any of them (the safety layer the
demos ran through, the recorder, config/record.yaml) changes the step's key; a change to code the
step never imports does not.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGES = ("psi0_ros", "training")  # the packages whose modules are followed (and hashed)
MESSAGES = "psi0_ros.msg"  # generated from msg/*.msg at build time


def module_file(root: Path, module: str) -> Path | None:
    """The source file of `module` under root (module.py or module/__init__.py), if there is one."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(path: Path, module: str) -> set[str]:
    """Absolute dotted names of everything the file imports, in any scope (relative imports
    resolved); `from a import b` gives both a and a.b (b may be a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    """a.b.c -> a, a.b, a.b.c: importing a submodule runs its packages' __init__ too."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _walk(entries: Iterable[str], root: Path) -> tuple[dict[str, Path], set[str]]:
    """({module: file} of the entry modules and every psi0_ros/training module they import,
    transitively; every name those files import)."""
    found: dict[str, Path] = {}
    imported: set[str] = set()
    pending = [m for entry in entries for m in _with_parents(entry)]
    while pending:
        module = pending.pop()
        if module in found or module.split(".")[0] not in PACKAGES:
            continue
        path = module_file(root, module)
        if path is None:  # a name inside a module (from a import function), or not in the tree
            continue
        found[module] = path
        names = imported_names(path, module)
        imported |= names
        for name in names:
            pending.extend(_with_parents(name))
    return dict(sorted(found.items())), imported


def import_closure(entries: Iterable[str], root: Path) -> dict[str, Path]:
    """{module: file} of the entry modules and every psi0_ros/training module they import, transitively."""
    return _walk(entries, root)[0]


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def step_sources(entries: Iterable[str], root: Path) -> list[Path]:
    """Every file a step's output depends on (see the module docstring), sorted, relative to root."""
    modules, imported = _walk(entries, root)
    files = set(modules.values())
    named: set[str] = set()
    for path in modules.values():
        named |= _string_constants(path)
    files.update(path for path in (root / "config").glob("*") if path.is_file() and path.name in named)
    if any(name == MESSAGES or name.startswith(MESSAGES + ".") for name in imported):
        files.update((root / "msg").glob("*.msg"))
    return sorted(path.relative_to(root) for path in files)


def source_digest(entries: Iterable[str], root: Path) -> str:
    """sha256 over the names and contents of step_sources(entries, root)."""
    digest = hashlib.sha256()
    for relative in step_sources(entries, root):
        digest.update(str(relative).encode())
        digest.update((root / relative).read_bytes())
    return digest.hexdigest()
