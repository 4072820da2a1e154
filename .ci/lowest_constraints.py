"""Print pip constraints that pin every dependency in pyproject.toml to its lower bound.

``make test-lowest`` installs with these, so a lower bound that is too low
fails CI instead of a user's install. torch keeps its exact pin. A dependency
without a lower bound is an error: there would be nothing to test.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*(?:;.*)?$")
LOWER_BOUND = re.compile(r"(?:>=|==)\s*([^,\s]+)")


def lowest_pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        bound = LOWER_BOUND.search(match.group(2)) if match else None
        if bound is None:
            raise SystemExit(f"{pyproject}: dependency {requirement!r} has no lower bound (>=) or pin (==)")
        pins[match.group(1).lower().replace("_", "-")] = bound.group(1)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print("\n".join(lowest_pins(root / "pyproject.toml")))
    sys.exit(0)
