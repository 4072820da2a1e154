"""The OpenAPI schema states the rules: descriptions, bounds (read from core's fields), caps, clean ids, local docs."""

import dataclasses
import re
import typing

from app.contracts.job_fields import FIELD_DESCRIPTIONS, description_for
from app.contracts.job_kinds import JOB_KINDS, PUBLIC_KINDS
from core.configs import declared_bounds

# pydantic's constraint names and the JSON Schema keywords they become.
SCHEMA_KEYWORDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def resolve(schema: dict, node: dict) -> dict:
    if "$ref" in node:
        return schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def body_fields(schema: dict, kind: str) -> dict[str, dict]:
    """Every property reachable from a job kind's body, by dotted path (nested models, list items, unions)."""
    body = schema["paths"][f"/jobs/{kind}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    found: dict[str, dict] = {}

    def walk(node: dict, path: str, seen: frozenset[str]) -> None:
        if "$ref" in node:
            name = node["$ref"]
            if name in seen:
                return
            node, seen = resolve(schema, node), seen | {name}
        for name, prop in node.get("properties", {}).items():
            found[f"{path}{name}"] = prop
            for option in [prop, *prop.get("anyOf", []), *([prop["items"]] if "items" in prop else [])]:
                walk(option, f"{path}{name}.", seen)

    walk(body, "", frozenset())
    return found


def numeric_options(prop: dict) -> list[dict]:
    """The integer/number schemas a property takes: itself, its anyOf branches, its (prefix) items."""
    options = []
    for option in [prop, *prop.get("anyOf", [])]:
        if option.get("type") in ("integer", "number"):
            options.append(option)
        items = [option["items"]] if isinstance(option.get("items"), dict) else []
        for item in [*items, *option.get("prefixItems", [])]:
            options += numeric_options(item)
    return options


def test_every_job_field_has_a_description_and_every_number_a_lower_bound(client):
    schema = client.get("/openapi.json").json()
    undescribed, unbounded, counted = [], [], 0
    for kind in PUBLIC_KINDS:
        for path, prop in body_fields(schema, kind).items():
            counted += 1
            if not prop.get("description"):
                undescribed.append(f"{kind}: {path}")
            for option in numeric_options(prop):
                if "minimum" not in option and "exclusiveMinimum" not in option:
                    unbounded.append(f"{kind}: {path}")
    assert counted > 150  # every public kind's fields, nested ones included
    assert undescribed == []
    assert unbounded == []


def test_bounds_are_in_the_schema_and_caps_come_from_settings(client, settings):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    distill = schema["DistillParams"]["properties"]
    assert distill["lr"]["exclusiveMinimum"] == 0 and distill["lr"]["description"] == "Adam learning rate"
    assert (distill["epochs"]["minimum"], distill["epochs"]["maximum"]) == (1, 100_000)
    assert distill["epochs"]["x-operating-cap"] == {
        "setting": "RECOMB_MAX_JOB_CALLS",
        "value": settings.max_job_calls,
        "meaning": "the job's total network calls (training steps, timed repeats, rollout steps)",
    }
    cap = schema["SyntheticStatesSpec"]["properties"]["n_states"]["x-operating-cap"]
    assert (cap["setting"], cap["value"]) == ("RECOMB_MAX_STATE_VALUES", settings.max_state_values)
    betas = [item for item in distill["adam_betas"]["prefixItems"]]
    assert all((item["minimum"], item["exclusiveMaximum"]) == (0, 1) for item in betas)


def test_operation_ids_are_clean_and_unique(client):
    paths = client.get("/openapi.json").json()["paths"]
    ids = [operation["operationId"] for methods in paths.values() for operation in methods.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", operation_id) for operation_id in ids), ids
    assert {f"create_{kind.replace('-', '_')}_job" for kind in PUBLIC_KINDS} <= set(ids)
    assert {"list_jobs", "get_job", "cancel_job", "get_report", "list_reports", "get_checkpoint"} <= set(ids)


def config_fields() -> list[tuple[type, dataclasses.Field]]:
    """Every field of every job kind's config, and of the configs nested in one (quantize's ptq and qat)."""
    classes = {JOB_KINDS[kind].params.config_class for kind in JOB_KINDS} - {None}
    nested = {
        hint
        for config_class in classes
        for hint in typing.get_type_hints(config_class).values()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint)
    }
    return [(config_class, field) for config_class in classes | nested for field in dataclasses.fields(config_class)]


def is_numeric(hint: object) -> bool:
    """Whether a field's type holds numbers: int or float, alone, optional, or as tuple items (bool is not one)."""
    if hint in (int, float):
        return True
    return any(is_numeric(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)


def test_every_numeric_config_field_declares_its_bounds_in_core():
    fields = config_fields()
    hints = {config_class: typing.get_type_hints(config_class) for config_class, _ in fields}
    numeric = [
        (config_class, field.name) for config_class, field in fields if is_numeric(hints[config_class][field.name])
    ]
    assert len(numeric) > 70
    unbounded = [f"{cls.__name__}.{name}" for cls, name in numeric if name not in declared_bounds(cls)]
    assert unbounded == []


def schema_bounds(option: dict) -> dict[str, float]:
    return {name: option[keyword] for name, keyword in SCHEMA_KEYWORDS.items() if keyword in option}


def test_the_openapi_bounds_are_the_ones_declared_in_core(client):
    """Each numeric config field of each job body shows exactly the bounds its core dataclass field declares."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    models = {kind.params.__name__: kind.params for kind in JOB_KINDS.values() if kind.params.config_class}
    compared, mismatched = 0, []
    for model_name, model in models.items():
        if model_name not in schemas:
            continue  # an internal kind whose body no route takes
        bodies = {model_name: model.config_class}
        for info in model.model_fields.values():
            nested = getattr(info.annotation, "config_class", None)
            if nested is not None:
                bodies[info.annotation.__name__] = nested
        for schema_name, config_class in bodies.items():
            properties = schemas[schema_name]["properties"]
            for name, bounds in declared_bounds(config_class).items():
                if name not in properties:
                    continue  # the kind sets this field itself (e.g. a mode per attempt)
                options = numeric_options(properties[name])
                compared += len(options)
                mismatched += [
                    f"{schema_name}.{name}: {schema_bounds(option)} != {dict(bounds)}"
                    for option in options
                    if schema_bounds(option) != dict(bounds)
                ]
    assert compared > 100
    assert mismatched == []


def test_every_description_is_used():
    used = {
        key
        for config_class, field in config_fields()
        for key in (f"{config_class.__name__}.{field.name}", field.name)
        if key in FIELD_DESCRIPTIONS
    }
    assert set(FIELD_DESCRIPTIONS) - used == set()
    assert all(description_for(config_class, field.name) for config_class, field in config_fields())


def test_docs_work_without_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/assets/") for source in sources), sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 500, source
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/..%2Fswagger%2FLICENSE").status_code == 404
    assert client.get("/redoc").status_code == 404
