"""The typed configuration: defaults, YAML files, CLI overrides and clear errors naming the key."""
import pytest

from configs.config import DEFAULT_CONFIG_PATH, Config, ConfigError, check_setting, leaf_fields, load_config


def test_default_yaml_matches_the_dataclass_defaults():
    assert load_config() == Config()
    assert DEFAULT_CONFIG_PATH.exists()


def test_every_setting_is_in_default_yaml():
    import yaml

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for key, _, _ in leaf_fields():
        node = data
        for part in key.split("."):
            assert part in node, f"{key} missing from default.yaml"
            node = node[part]


def test_overrides_and_coercion(tmp_path):
    cfg = load_config(overrides={"body.stature": 2, "body.model": "procedural", "body.betas": [1, 2.5]})
    assert cfg.body.stature == 2.0 and isinstance(cfg.body.stature, float)
    assert cfg.body.model == "procedural" and cfg.body.betas == [1.0, 2.5]
    path = tmp_path / "c.yaml"
    path.write_text("body:\n  stature: 1.5\ndevice: cpu\n")
    cfg = load_config(path, {"device": "auto"})
    assert cfg.body.stature == 1.5 and cfg.device == "auto" and cfg.body.mesh == "lowres"


@pytest.mark.parametrize("overrides, message", [
    ({"body.staure": 1.8}, "unknown config key 'body.staure'"),
    ({"bdy.stature": 1.8}, "unknown config key 'bdy'"),
    ({"body.stature": "tall"}, "config key 'body.stature': expected float"),
    ({"body.stature": True}, "config key 'body.stature': expected float"),
    ({"body.stature": 9.0}, "config key 'body.stature': 9.0 is above the maximum"),
    ({"body.stature": 0.1}, "config key 'body.stature': 0.1 is below the minimum"),
    ({"body.model": "smplx"}, "config key 'body.model': 'smplx' is not one of"),
    ({"body.betas": [1, "a"]}, r"config key 'body.betas\[1\]': expected float"),
    ({"body": 3}, "config key 'body': expected a mapping"),
    ({"engine.window": 40, "engine.lag": 21}, r"'engine.lag': 21 frames is more than half of engine.window \(40\)"),
    ({"engine.prompt": "walk\udc80ing"}, r"config key 'engine.prompt': not valid text \(an undecodable character at "
                                          r"position 4\)"),
    ({"engine.prompt": "a" * 201}, "config key 'engine.prompt': 201 characters, at most 200"),
    ({"token": "s3c\0ret"}, "config key 'token': a NUL character is not allowed"),
    ({"outputs.record": ["take\udc80.npz"]}, r"config key 'outputs.record\[0\]': not valid text"),
    ({"engine.weights": "w" * 5000}, "config key 'engine.weights': 5000 characters, at most 4096"),
    ({"outputs.preview": True}, "config key 'outputs.preview': the camera preview is shown in the viewer"),
    ({"outputs.viewer": "127.0.0.1:8080", "outputs.preview": True, "outputs.preview_width": 4000},
     "config key 'outputs.preview_width': 4000 is above the maximum 640"),
    ({"outputs.viewer": "127.0.0.1:8080", "outputs.preview": True, "outputs.preview_fps": 0},
     "config key 'outputs.preview_fps': 0.0 is below the minimum 0.5"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("body: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_one_setting_is_checked_alone_as_the_loader_checks_it():
    assert check_setting("engine.prompt", "a person waves") == "a person waves"
    assert check_setting("engine.guidance", 3) == 3.0  # int -> float, as in YAML
    with pytest.raises(ConfigError, match="config key 'engine.steps': 0 is below the minimum 1"):
        check_setting("engine.steps", 0)
    with pytest.raises(ConfigError, match="config key 'engine.prompt': not valid text"):
        check_setting("engine.prompt", "\ud800")
    with pytest.raises(ConfigError, match="unknown config key 'engine.speed'"):
        check_setting("engine.speed", 1)
