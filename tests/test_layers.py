"""The folders are the layers: imports point one way, and no module name repeats across layers."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "core", "migrations")

# What each layer may not import (by dotted prefix).
FORBIDDEN = {
    "app": ("worker", "migrations"),
    "app/contracts": ("app.api", "app.service", "app.cli"),
    "app/service": ("app.api", "app.cli"),
    "app/cli": ("app.api",),  # the launcher may use the service (requeue lost jobs, ping workers)
    "core": ("app", "worker", "migrations"),
}


def _modules(folder: str) -> list[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "versions" not in path.parts)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_lies_below_it(folder):
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(folder)
        for name in _imported(path)
        if any(name == prefix or name.startswith(f"{prefix}.") for prefix in FORBIDDEN[folder])
    }
    assert not offending


def test_no_two_modules_share_a_name_across_layers():
    places: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in _modules(package):
            if path.name not in ("__init__.py", "__main__.py"):
                places[path.stem].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in places.items() if len(paths) > 1} == {}


def test_the_scan_sees_real_imports():
    # A scan that found nothing would pass every rule above.
    assert "app.service.tables" in _imported(ROOT / "app" / "service" / "job_status.py") | {
        name.rsplit(".", 1)[0] for name in _imported(ROOT / "app" / "service" / "job_status.py")
    }
    assert "app.contracts.job_kinds.JOB_KINDS" in _imported(ROOT / "worker" / "tasks" / "__init__.py")
