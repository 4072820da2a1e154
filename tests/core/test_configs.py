"""Bounds declared once with ``param`` and enforced by ``check_bounds``, for every config of core.configs."""

import dataclasses
import inspect
import re
from dataclasses import dataclass

import pytest

from core import configs
from core.configs import (
    MAX_EPOCHS,
    MAX_SEED,
    DistillConfig,
    EvolveConfig,
    FinetuneConfig,
    QATConfig,
    TrainConfig,
    check_bounds,
    declared_bounds,
    param,
)

# Extra fields some bounds need to be reachable: a custom grid, a population that leaves room for the elite.
CONTEXT = {
    "SearchConfig": {"preset": "custom"},
    "EvolveConfig": {"population_size": 64, "elite": 1, "tournament_size": 1},
}

CONFIG_CLASSES = [
    cls
    for _, cls in inspect.getmembers(configs, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == configs.__name__ and declared_bounds(cls)
]


@dataclass(frozen=True)
class Example:
    count: int = param(1, ge=1, le=10)
    rate: float | None = param(0.5, gt=0, lt=1)
    widths: tuple[int | None, ...] = param((4,), ge=1, le=8)
    betas: tuple[float, float] = param((0.5, 0.5), ge=0, lt=1)

    def __post_init__(self) -> None:
        check_bounds(self)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": 0}, "count must be an integer in [1, 10], got 0"),
        ({"count": 11}, "count must be an integer in [1, 10], got 11"),
        ({"count": 2.0}, "count must be an integer in [1, 10], got 2.0"),
        ({"count": True}, "count must be an integer in [1, 10], got True"),
        ({"count": None}, "count must be an integer in [1, 10], got None"),
        ({"rate": 0}, "rate must be a number in (0, 1) or None, got 0"),
        ({"rate": 1.0}, "rate must be a number in (0, 1) or None, got 1.0"),
        ({"rate": float("nan")}, "rate must be a number in (0, 1) or None, got nan"),
        ({"rate": "0.5"}, "rate must be a number in (0, 1) or None, got '0.5'"),
        ({"widths": (4, 9)}, "widths[1] must be an integer in [1, 8] or None, got 9"),
        ({"widths": "44"}, "widths must be a list, got '44'"),
        ({"betas": [0.5, 1.0]}, "betas[1] must be a number in [0, 1), got 1.0"),
    ],
)
def test_check_bounds_names_the_field_the_bounds_and_the_value(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Example(**values)


def test_check_bounds_accepts_the_edges_and_none_where_the_type_allows_it():
    example = Example(count=10, rate=None, widths=[1, None, 8], betas=(0, 0.999))
    assert (example.count, example.rate, example.widths) == (10, None, [1, None, 8])


def test_declared_bounds_are_the_ones_param_wrote():
    assert declared_bounds(Example) == {
        "count": {"ge": 1, "le": 10},
        "rate": {"gt": 0, "lt": 1},
        "widths": {"ge": 1, "le": 8},
        "betas": {"ge": 0, "lt": 1},
    }
    assert declared_bounds(TrainConfig)["epochs"] == {"ge": 1, "le": MAX_EPOCHS}
    assert declared_bounds(EvolveConfig)["seed"] == {"ge": 0, "le": MAX_SEED}


def test_stage_configs_take_the_training_bounds_from_train_config():
    """Distill, QAT and fine-tune share TrainConfig's bounds; only distillation demands a validation split."""
    train = declared_bounds(TrainConfig)
    for config_class in (DistillConfig, QATConfig, FinetuneConfig):
        own = declared_bounds(config_class)
        shared = sorted(set(own) & set(train) - {"val_fraction"})
        assert len(shared) >= 6 and {name: own[name] for name in shared} == {name: train[name] for name in shared}
    assert declared_bounds(DistillConfig)["val_fraction"] == {"gt": 0, "lt": 1}
    assert declared_bounds(FinetuneConfig)["val_fraction"] == train["val_fraction"] == {"ge": 0, "lt": 1}


def test_a_bound_cannot_sit_on_a_field_that_is_not_a_number():
    @dataclass(frozen=True)
    class Named:
        name: str = param("a", ge=0)

        def __post_init__(self) -> None:
            check_bounds(self)

    with pytest.raises(TypeError, match="a bounded field must be a number"):
        Named()


def bound_probes(bounds: dict[str, float], integer: bool) -> list[tuple[float, bool]]:
    """(value, valid) pairs on each side of every bound."""
    step = 1 if integer else 1e-6
    probes = []
    for key, bound in bounds.items():
        probes += {
            "ge": [(bound, True), (bound - step, False)],
            "le": [(bound, True), (bound + step, False)],
            "gt": [(bound + step, True), (bound, False)],
            "lt": [(bound - step, True), (bound, False)],
        }[key]
    return probes


def bounded_fields() -> list[tuple[type, str]]:
    return [(config_class, name) for config_class in CONFIG_CLASSES for name in declared_bounds(config_class)]


@pytest.mark.parametrize(
    ("config_class", "name"), bounded_fields(), ids=lambda value: getattr(value, "__name__", value)
)
def test_every_declared_bound_is_enforced_at_its_edge(config_class, name):
    """Each config accepts each declared bound's edge and refuses one step past it, naming the field."""
    bounds = declared_bounds(config_class)[name]
    hint = str(next(field.type for field in dataclasses.fields(config_class) if field.name == name))
    integer = "int" in hint and "float" not in hint
    default = next(field.default for field in dataclasses.fields(config_class) if field.name == name)
    context = CONTEXT.get(config_class.__name__, {})
    for probe, valid in bound_probes(bounds, integer):
        values = context | {name: probe_value(hint, default, probe)}
        if valid:
            config_class(**values)
        else:
            with pytest.raises(ValueError, match=re.escape(name)):
                config_class(**values)


def probe_value(hint: str, default: object, probe: float) -> object:
    """``probe`` as the field's value, or as the first item of a tuple field (the other items kept valid)."""
    if "tuple" not in hint:
        return probe
    return (probe, *default[1:]) if isinstance(default, tuple) else (probe,)


def test_every_config_of_core_is_covered():
    names = {config_class.__name__ for config_class in CONFIG_CLASSES}
    assert {"TrainConfig", "DistillConfig", "SearchConfig", "EvolveConfig", "SyntheticStates"} <= names
