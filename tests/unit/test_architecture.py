"""Dependencies point down: each top-level package imports only the packages below it.

    automation  (the CLI and the composition of processes)
    consumers   producers   scheduler   (never each other)
    ai          (consumers only)
    shared      (nothing above it)

`bench` and `tests` sit beside the application and may import anything; nothing imports them.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "shared": {"shared"},
    "ai": {"ai", "shared"},
    "consumers": {"consumers", "ai", "shared"},
    "producers": {"producers", "shared"},
    "scheduler": {"scheduler", "shared"},
    "automation": {"automation", "consumers", "producers", "scheduler", "ai", "shared"},
}
PROJECT = set(ALLOWED) | {"bench", "tests"}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in PROJECT}
    return found


def test_every_import_points_down() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            wrong += [f"{path.relative_to(ROOT)}:{line} imports {target}"
                      for target, line in sorted(imported_packages(path)) if target not in allowed]
    assert wrong == []


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import shared.db\n\ndef late():\n    from consumers.app import build_app\n")
    assert imported_packages(sample) == {("shared", 1), ("consumers", 4)}
