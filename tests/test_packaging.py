"""What an operator meets before the first job: the install, the image and the compose stack.

There is no Docker engine here: docker-compose.yml is validated against the
Compose Specification's JSON schema (``tests/data``), and the Dockerfile's
layer order is read from the file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from tests.api.conftest import client_for, make_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
COMPOSE_SCHEMA = json.loads((REPO_ROOT / "tests" / "data" / "compose-spec.json").read_text())
RECOMB_SERVICES = ("migrations", "api", "worker")
sys.path.insert(0, str(REPO_ROOT / ".ci"))
from lowest_constraints import lowest_pins  # noqa: E402


def requirements(extras: bool = True) -> list[Requirement]:
    listed = list(PROJECT["dependencies"])
    if extras:
        listed += [item for group in PROJECT["optional-dependencies"].values() for item in group]
    return [Requirement(item) for item in listed]


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_every_dependency_is_locked_at_a_version_pyproject_allows():
    pins = locked()
    for requirement in requirements():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name]), (
            f"constraints.txt has {name}=={pins[name]}, pyproject wants {requirement}: run `make lock`"
        )


def test_every_dependency_has_a_lower_bound_to_test():
    pins = lowest_pins(REPO_ROOT / "pyproject.toml")
    assert len(pins) == len({requirement.name.lower() for requirement in requirements()})
    assert "torch==2.13.0" in pins and "fastapi==0.135" in pins


def test_the_embedded_stack_needs_no_postgresql_or_redis_client():
    names = {requirement.name for requirement in requirements(extras=False)}
    assert not names & {"psycopg", "redis"}
    assert {
        requirement.name for requirement in map(Requirement, PROJECT["optional-dependencies"]["redis-postgres"])
    } == {"psycopg", "redis"}


def test_the_api_reports_the_version_in_pyproject(tmp_path):
    with client_for(make_settings(tmp_path)) as client:
        assert client.get("/openapi.json").json()["info"]["version"] == PROJECT["version"]


def make_dry_run(*variables: str) -> str:
    """The commands `make install` would run in a fresh venv (nothing is run)."""
    argv = ["make", "--no-print-directory", "-n", "-B", "install", "VENV=/nonexistent/venv", *variables]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


def test_make_installs_the_cpu_build_of_torch_unless_told_otherwise():
    default = make_dry_run()
    assert "'torch==2.13.0+cpu'" in default and "--index-url 'https://download.pytorch.org/whl/cpu'" in default
    assert "-c constraints.txt -e ." in default
    cuda = make_dry_run("TORCH_INDEX=https://download.pytorch.org/whl/cu126")
    assert "'torch==2.13.0+cu126'" in cuda and "--index-url 'https://download.pytorch.org/whl/cu126'" in cuda


def test_compose_file_follows_the_compose_specification():
    jsonschema.Draft7Validator(COMPOSE_SCHEMA).validate(COMPOSE)


def test_the_compose_schema_check_catches_a_misspelt_key():
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["worker"]["helthcheck"] = broken["services"]["worker"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        jsonschema.Draft7Validator(COMPOSE_SCHEMA).validate(broken)


def test_compose_builds_one_image_for_every_recomb_service():
    services = COMPOSE["services"]
    assert [name for name, service in services.items() if "build" in service] == ["migrations"]
    assert len({services[name]["image"] for name in RECOMB_SERVICES}) == 1
    assert services["api"]["pull_policy"] == services["worker"]["pull_policy"] == "never"


def test_compose_restarts_long_running_services_and_checks_the_worker():
    services = COMPOSE["services"]
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    assert services["worker"]["healthcheck"]["test"][:3] == ["CMD", "recomb", "ping-worker"]


def test_compose_takes_passwords_from_the_environment_file_only():
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or key == "RECOMB_API_KEYS":
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}.{key} must come from .env, not the file"
    assert ":" not in COMPOSE["x-recomb-env"]["RECOMB_DATABASE_URL"].split("//")[1].split("@")[0], (
        "no password in the database URL"
    )


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_installs_dependencies_before_copying_the_code():
    steps = dockerfile_instructions()
    first_code_copy = next(
        index
        for index, (op, args) in enumerate(steps)
        if op == "COPY" and args.split()[0] in ("app", "core", "worker", "migrations")
    )
    dependency_installs = [
        index for index, (op, args) in enumerate(steps) if op == "RUN" and "-c constraints.txt" in args
    ]
    assert len(dependency_installs) == 2 and max(dependency_installs) < first_code_copy
    copied_before = {source for op, args in steps[:first_code_copy] if op == "COPY" for source in args.split()[:-1]}
    assert copied_before <= {"constraints.txt", "pyproject.toml", "README.md", "alembic.ini"}


def test_dockerfile_runs_as_a_user_and_checks_its_health():
    ops = [op for op, _ in dockerfile_instructions()]
    users = [args for op, args in dockerfile_instructions() if op == "USER"]
    assert users == ["recomb"] and ops.index("USER") < ops.index("CMD")
    assert "HEALTHCHECK" in ops


def test_docker_build_context_leaves_out_environments_data_and_secrets():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv*", "var", ".env", "tests"} <= ignored
