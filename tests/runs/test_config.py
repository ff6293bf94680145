from dataclasses import dataclass, field

import pytest

from sonofm.errors import SonofmError
from sonofm.runs.config import (
    Override, config_from_dict, config_to_dict, load_config, parse_override, resolve_config, save_config,
)


@dataclass
class Inner:
    lr: float = 0.1
    label: str = "x"
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    name: str = "a"
    epochs: int = 3
    weights: str | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def apply_sets(config, items: list[str]):
    """``config`` with ``--set``-style ``key=value`` strings applied."""
    return resolve_config(config, [parse_override(item) for item in items])


def test_overrides_parse_and_coerce_types():
    config = apply_sets(Outer(), ["epochs=7", "inner.lr=1e-3", "weights=/x.pth", "flag=true", "inner.betas=[0.8, 0.9]"])
    assert config.epochs == 7 and config.inner.lr == pytest.approx(1e-3)
    assert config.weights == "/x.pth" and config.flag is True and config.inner.betas == (0.8, 0.9)
    assert isinstance(config.inner.lr, float)


def test_int_accepted_for_float_and_null_for_optional():
    config = apply_sets(Outer(weights="w"), ["inner.lr=1", "weights=null"])
    assert config.inner.lr == 1.0 and isinstance(config.inner.lr, float) and config.weights is None


@pytest.mark.parametrize(
    "override, fragment",
    [("epochz=3", "unknown config key 'epochz'"), ("inner.lrr=3", "unknown config key 'inner.lrr'"),
     ("epochs=abc", "config key 'epochs' expects int"), ("nothing", "--set expects key=value"),
     ("epochs.x=1", "unknown config section 'epochs'")],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(SonofmError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        apply_sets(Outer(), [override])


def test_yaml_round_trip(tmp_path):
    config = apply_sets(Outer(), ["epochs=9", "inner.betas=[0.5, 0.6]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(Outer, tmp_path / "config.yaml") == config
    assert config_from_dict(Outer, config_to_dict(config)) == config


def test_unknown_key_in_file_is_reported(tmp_path):
    (tmp_path / "config.yaml").write_text("epochs: 2\nbogus: 1\n")
    with pytest.raises(SonofmError, match="unknown config key 'bogus'"):
        load_config(Outer, tmp_path / "config.yaml")


def test_precedence_preset_then_flag_then_set_on_the_same_key():
    preset = [parse_override("epochs=5", source="preset p:"), parse_override("inner.lr=0.5", source="preset p:")]
    flags = [Override("epochs", 6, "--epochs"), Override("inner.lr", 0.25, "--lr")]
    sets = [parse_override("epochs=7"), parse_override("inner.lr=0.125")]
    config = resolve_config(Outer(), preset)
    assert (config.epochs, config.inner.lr) == (5, 0.5)
    config = resolve_config(Outer(), [*preset, *flags])
    assert (config.epochs, config.inner.lr) == (6, 0.25)
    config = resolve_config(Outer(), [*preset, *flags, *sets])
    assert (config.epochs, config.inner.lr) == (7, 0.125)


def test_typed_flag_values_are_assigned_without_a_yaml_round_trip():
    flags = [Override("inner.lr", 1e-3, "--lr"), Override("inner.label", "0123", "--label"),
             Override("name", "yes", "--name"), Override("inner.betas", [0.8, 0.9], "--betas")]
    config = resolve_config(Outer(), flags)
    assert config.inner.lr == 1e-3 and isinstance(config.inner.lr, float)
    assert (config.inner.label, config.name, config.inner.betas) == ("0123", "yes", (0.8, 0.9))
    # the same text through --set is YAML: 0123 is octal 83 and yes is a boolean, which a str field rejects
    assert apply_sets(Outer(), ["inner.label=0123"]).inner.label == "83"
    with pytest.raises(SonofmError, match="config key 'name' expects str, got True"):
        apply_sets(Outer(), ["name=yes"])


@pytest.mark.parametrize(
    "override, message",
    [(Override("epochs", "abc", "--epochs"), "config key 'epochs' expects int, got 'abc'"),
     (Override("epochs", 2.5, "--epochs"), "config key 'epochs' expects int, got 2.5"),
     (Override("inner.lr", "fast", "--lr"), "config key 'inner.lr' expects float, got 'fast'"),
     (Override("flag", "yes", "--flag"), "config key 'flag' expects true/false, got 'yes'")],
)
def test_wrong_flag_type_is_one_line_error_naming_the_key(override, message):
    with pytest.raises(SonofmError) as error:
        resolve_config(Outer(), [override])
    assert str(error.value) == message


def test_unknown_key_from_a_flag_or_preset_names_its_source():
    expected = r"^unknown config key 'inner\.lrr' in --lr; valid keys here: betas, label, lr$"
    with pytest.raises(SonofmError, match=expected):
        resolve_config(Outer(), [Override("inner.lrr", 0.1, "--lr")])
    with pytest.raises(SonofmError, match=r"^unknown config section 'epochs' in preset p: epochs\.x=1$"):
        resolve_config(Outer(), [parse_override("epochs.x=1", source="preset p:")])
