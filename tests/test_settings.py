"""Settings: precedence, validation, did-you-mean; target names against auditwheel's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbackend.errors import ConfigError
from mlbackend.policy import load_policies, normalize_target
from mlbackend.settings import Settings, load_settings, settings_env


def _project(tmp_path: Path, table: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname='x'\nversion='1'\n{table}")
    return tmp_path


def test_defaults_without_ci_are_not_strict(tmp_path: Path) -> None:
    settings = load_settings(_project(tmp_path), {}, env={})
    assert settings == Settings()
    assert settings.strict is False


@pytest.mark.parametrize("env", [{"CI": "true"}, {"CI": "1"},
                                 {"AUDITWHEEL_PLAT": "manylinux2014_x86_64"}])
def test_strict_by_default_in_ci_or_baseline_image(tmp_path: Path, env: dict) -> None:
    assert load_settings(_project(tmp_path), {}, env=env).strict is True


def test_precedence_env_over_config_over_pyproject(tmp_path: Path) -> None:
    src = _project(tmp_path, "[tool.mlbackend]\nmanylinux = '2_28'\nrepair = false\n"
                             "exclude = ['libcuda.so.*']\n")
    from_file = load_settings(src, {}, env={})
    assert (from_file.manylinux, from_file.repair, from_file.exclude) == \
        ("manylinux_2_28", False, ("libcuda.so.*",))
    from_config = load_settings(src, {"manylinux": "2014", "repair": "true"}, env={})
    assert (from_config.manylinux, from_config.repair) == ("manylinux_2_17", True)
    from_env = load_settings(src, {"manylinux": "2014"}, env={"MLBACKEND_MANYLINUX": "2_34"})
    assert from_env.manylinux == "manylinux_2_34"


@pytest.mark.parametrize(("given", "expected"), [
    ("auto", "auto"), ("2_17", "manylinux_2_17"), ("2014", "manylinux_2_17"),
    ("manylinux2014", "manylinux_2_17"), ("manylinux_2_28", "manylinux_2_28"),
    ("manylinux_2_28_x86_64", "manylinux_2_28"), ("musllinux_1_2", "musllinux_1_2"),
    ("manylinux1", "manylinux_2_5"), ("manylinux2010", "manylinux_2_12"),
])
def test_target_names(given: str, expected: str) -> None:
    assert normalize_target(given) == expected


def test_bad_target_lists_choices() -> None:
    with pytest.raises(ConfigError) as info:
        normalize_target("2_99")
    assert "manylinux_2_17" in info.value.tip


@pytest.mark.parametrize(("source", "key"), [("config", "manylnux"), ("pyproject", "exlude"),
                                             ("env", "MLBACKEND_BASELNE")])
def test_unknown_keys_get_did_you_mean(tmp_path: Path, source: str, key: str) -> None:
    table = f"[tool.mlbackend]\n{key} = 'x'\n" if source == "pyproject" else ""
    src = _project(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        load_settings(src, {key: "x"} if source == "config" else {},
                      env={key: "x"} if source == "env" else {})
    assert info.value.tip.startswith("did you mean")


def test_setuptools_keys_pass_through(tmp_path: Path) -> None:
    settings = load_settings(_project(tmp_path), {"--build-option": ["--debug"]}, env={})
    assert settings == Settings()


@pytest.mark.parametrize(("key", "value"), [("baseline", "docker"), ("container-engine", "lxc"),
                                            ("strict", "maybe"), ("repair", "2")])
def test_bad_values_are_errors(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_project(tmp_path), {key: value}, env={})
    assert key in info.value.message


def test_settings_round_trip_through_env(tmp_path: Path) -> None:
    src = _project(tmp_path)
    settings = load_settings(src, {"manylinux": "2_28", "exclude": "liba.so.1 libb.so.*",
                                   "before-build": "yum install -y libyaml-devel",
                                   "strict": "true"}, env={})
    assert load_settings(src, {}, env=settings_env(settings)) == settings


def test_policies_come_from_auditwheel_with_aliases() -> None:
    policies = load_policies("glibc", "x86_64")
    p2014 = policies.find("manylinux_2_17")
    assert p2014 is not None
    assert p2014.tags == ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    assert policies.linux.name == "linux_x86_64"
    musl = load_policies("musl", "x86_64")
    assert "libc.musl-x86_64.so.1" in musl.highest.whitelist


@pytest.mark.parametrize(("toml", "needle"), [
    ("[tool.mlbackend]\nexclude = {a = 1}\n", "exclude in [tool.mlbackend] must be a string or "
                                               "a list of strings, not a table"),
    ("[tool.mlbackend]\nexclude = ['a', 1]\n", "must be a list of strings; it holds a number"),
    ("[tool.mlbackend]\nbaseline = ['zig', 'host']\n", "baseline in [tool.mlbackend] must be a "
                                                       "string, not a list"),
    ("[tool.mlbackend]\nstrict = 1\n", "strict in [tool.mlbackend] must be true or false, "
                                       "not a number"),
    ("[tool.mlbackend]\nmanylinux = 2014\n", "must be a string, not a number"),
    ("tool = 5\n", "[tool] in"),
    ("[tool]\nmlbackend = 'x'\n", "[tool.mlbackend]"),
])
def test_values_of_the_wrong_type_are_one_line_errors(tmp_path: Path, toml: str, needle: str,
                                                      capsys: pytest.CaptureFixture[str],
                                                      ) -> None:
    from mlbackend._boundary import hook

    project = _project(tmp_path, toml)
    if toml.startswith("tool ="):  # a top-level key: before the [project] table
        (project / "pyproject.toml").write_text(toml + "[project]\nname='x'\nversion='1'\n")
    with pytest.raises(SystemExit) as exit_info:
        hook(load_settings)(project, {}, env={})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("mlbackend: error: ")
    assert len(err.splitlines()) <= 2 and "Traceback" not in err


def test_before_build_keeps_its_commands_through_env(tmp_path: Path) -> None:
    src = _project(tmp_path, "[tool.mlbackend]\nbefore-build = ['yum install -y a', 'make b']\n")
    settings = load_settings(src, {}, env={})
    assert settings.before_build == ("yum install -y a", "make b")
    assert load_settings(src, {}, env=settings_env(settings)) == settings
def test_pipeline_options_reach_the_build_as_env_and_leave_the_rest_to_the_project(
        tmp_path: Path) -> None:
    from mlbackend.pipeline.run import PipelineOptions, _build_env

    src = _project(tmp_path, "[tool.mlbackend]\nrepair = false\nbaseline = 'host'\n")
    options = PipelineOptions(package_dir=src, output_dir=tmp_path / "out", python_versions=(),
                              manylinux="2_17", before_build="yum install -y a\nmake b\n")
    env = {k: v for k, v in _build_env(options, None).items() if k.startswith("MLBACKEND_")}
    assert sorted(env) == ["MLBACKEND_BEFORE_BUILD", "MLBACKEND_MANYLINUX"]
    settings = load_settings(src, {}, env=env)
    assert settings.before_build == ("yum install -y a", "make b")
    assert settings.manylinux == "manylinux_2_17"
    assert settings.repair is False and settings.baseline == "host"


def test_a_bad_pipeline_option_is_named_as_one(tmp_path: Path) -> None:
    from mlbackend.errors import ConfigError
    from mlbackend.pipeline.run import PipelineOptions, _build_env

    options = PipelineOptions(package_dir=tmp_path, output_dir=tmp_path / "out",
                              python_versions=(), baseline="docker")
    with pytest.raises(ConfigError, match="baseline in the pipeline's options must be one of"):
        _build_env(options, None)


def test_shipped_policy_data_is_the_installed_auditwheels() -> None:
    import json

    import auditwheel  # the test extra installs it; the package itself does not need it

    from mlbackend.policy import policy_data_dir

    theirs = Path(auditwheel.__file__).parent / "policy"
    for name in ("manylinux-policy.json", "musllinux-policy.json"):
        assert json.loads((policy_data_dir() / name).read_text()) == \
            json.loads((theirs / name).read_text()), f"{name}: copy it from auditwheel"
