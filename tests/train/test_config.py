"""Config overrides: parsed by field type; bad fields and values name the field and type."""

import dataclasses
from typing import Any

import pytest

from jaxvision import train


@dataclasses.dataclass
class Cfg:
    name: str = "shapes"
    steps: int = 10
    lr: float = 1e-3
    fresh_heads: bool = False
    buckets: tuple[int, ...] = (64,)
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    limit: int | None = None


def test_values_parse_by_field_type():
    cfg = train.override(
        Cfg(),
        [
            "name=test",  # a plain string (was a bare JSONDecodeError before)
            "steps=20",
            "lr=5e-4",
            "fresh_heads=true",
            "buckets=32,64",
            'model_kwargs={"d_model": 32, "widths": [8, 16]}',
            "limit=none",
        ],
    )
    assert cfg == Cfg("test", 20, 5e-4, True, (32, 64), {"d_model": 32, "widths": (8, 16)}, None)
    assert train.override(Cfg(), ["buckets=[16]", "limit=3"]).buckets == (16,)
    assert Cfg().steps == 10  # the preset is not modified


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("steps=abc", "field 'steps' expects int, got 'abc'"),
        ("steps=1.5", "field 'steps' expects int"),
        ("lr=fast", "field 'lr' expects float"),
        ("fresh_heads=maybe", "field 'fresh_heads' expects bool"),
        ("buckets=a,b", r"field 'buckets' expects tuple\[int, ...\]"),
        ("model_kwargs={bad", r"field 'model_kwargs' expects dict\[str, Any\]"),
        ("stesp=3", "Cfg has no field 'stesp'; did you mean steps"),
        ("steps", "expected field=value"),
    ],
)
def test_bad_overrides_name_the_field_and_type(item, message):
    with pytest.raises(train.ConfigError, match=message):
        train.override(Cfg(), [item])


def test_round_trip_and_diff():
    cfg = Cfg(buckets=(32, 64), model_kwargs={"w": (1, 2)})
    saved = train.config_to_dict(cfg)
    assert saved["buckets"] == [32, 64]
    assert train.config_from_dict(Cfg, saved) == cfg
    assert train.config_diff(saved, train.config_to_dict(dataclasses.replace(cfg, lr=0.5))) == [
        "lr: 0.001 (saved) -> 0.5 (now)"
    ]
    with pytest.raises(train.ConfigError, match="fields Cfg lacks: .'gone'."):
        train.config_from_dict(Cfg, {**saved, "gone": 1})
    with pytest.raises(train.ConfigError, match="'steps' = 'x' is not a int"):
        train.config_from_dict(Cfg, {**saved, "steps": "x"})
