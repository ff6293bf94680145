from dataclasses import dataclass, field

import pytest

from sonofm.errors import SonofmError
from sonofm.runs.config import apply_overrides, config_from_dict, config_to_dict, load_config, save_config


@dataclass
class Inner:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    name: str = "a"
    epochs: int = 3
    weights: str | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_and_coerce_types():
    config = apply_overrides(Outer(), ["epochs=7", "inner.lr=1e-3", "weights=/x.pth", "flag=true", "inner.betas=[0.8, 0.9]"])
    assert config.epochs == 7 and config.inner.lr == pytest.approx(1e-3)
    assert config.weights == "/x.pth" and config.flag is True and config.inner.betas == (0.8, 0.9)
    assert isinstance(config.inner.lr, float)


def test_int_accepted_for_float_and_null_for_optional():
    config = apply_overrides(Outer(weights="w"), ["inner.lr=1", "weights=null"])
    assert config.inner.lr == 1.0 and isinstance(config.inner.lr, float) and config.weights is None


@pytest.mark.parametrize(
    "override, fragment",
    [("epochz=3", "unknown config key 'epochz'"), ("inner.lrr=3", "unknown config key 'inner.lrr'"),
     ("epochs=abc", "config key 'epochs' expects int"), ("nothing", "--set expects key=value"),
     ("epochs.x=1", "unknown config section 'epochs'")],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(SonofmError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        apply_overrides(Outer(), [override])


def test_yaml_round_trip(tmp_path):
    config = apply_overrides(Outer(), ["epochs=9", "inner.betas=[0.5, 0.6]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(Outer, tmp_path / "config.yaml") == config
    assert config_from_dict(Outer, config_to_dict(config)) == config


def test_unknown_key_in_file_is_reported(tmp_path):
    (tmp_path / "config.yaml").write_text("epochs: 2\nbogus: 1\n")
    with pytest.raises(SonofmError, match="unknown config key 'bogus'"):
        load_config(Outer, tmp_path / "config.yaml")
