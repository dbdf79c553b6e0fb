"""The Snowflake procedures' settings as dbt compiles them, without an account.

Every Python model runs on Snowflake as a stored procedure whose packages, imports, Python
version and kind (anonymous or named) come from the proactive_recs_snowflake_* vars. These
tests parse the project for the snowflake target and read the manifest: the packages must
cover what each model's require_packages asks for (the list a procedure would otherwise
fail on at run time), and the vars must reach every model.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import DBT, REPO
from proactive_recs.warehouse.dbt_io import DISTRIBUTIONS, require_packages


def _parse(tmp_path: Path, vars_: dict | None = None) -> dict:
    import os
    import subprocess

    command = [DBT, "parse", "--target", "snowflake", "--target-path", str(tmp_path / "target")]
    if vars_:
        command += ["--vars", json.dumps(vars_)]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node.get("language") == "python" and node["package_name"] == "proactive_recs"
    }


def _required_modules(path: Path) -> list[str]:
    """The module names a model file passes to require_packages (none if it does not)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "require_packages"
            and node.args
        ):
            return [ast.literal_eval(element) for element in node.args[0].elts]
    return []


@pytest.fixture(scope="module")
def python_models(tmp_path_factory):
    return _parse(tmp_path_factory.mktemp("snowflake_parse"))


def test_every_procedure_gets_the_packages_its_model_requires(python_models):
    assert len(python_models) >= 9
    for name, node in python_models.items():
        packages = node["config"]["packages"]
        required = _required_modules(REPO / node["original_file_path"])
        missing = {DISTRIBUTIONS.get(m, m) for m in required} - set(packages)
        assert not missing, f"{name}: packages {packages} lack {sorted(missing)}"
        # implicit (from PyPI) only where the recommender is fitted
        assert ("implicit" in packages) == ("implicit" in required), name
        assert {"numpy", "pandas"} <= set(packages), name


def test_the_defaults_are_python_3_11_named_procedures_and_the_stage_zip(python_models):
    for name, node in python_models.items():
        config = node["config"]
        assert config["python_version"] == "3.11", name
        # a named procedure: the schema's default artifact repository applies to it
        assert config["use_anonymous_sproc"] is False, name
        assert config["imports"] == ["@proactive_recs_stage/proactive_recs.zip"], name


def test_the_vars_reach_every_procedure(tmp_path):
    models = _parse(
        tmp_path,
        {
            "proactive_recs_snowflake_stage": "my_db.my_schema.libs",
            "proactive_recs_snowflake_extra_imports": ["@libs/implicit.zip"],
            "proactive_recs_snowflake_python_version": "3.12",
            "proactive_recs_snowflake_use_anonymous_sproc": True,
            "proactive_recs_snowflake_recommender_packages": [],
            "proactive_recs_snowflake_packages": ["numpy", "pandas", "numba"],
        },
    )
    for name, node in models.items():
        config = node["config"]
        assert config["imports"] == [
            "@my_db.my_schema.libs/proactive_recs.zip",
            "@libs/implicit.zip",
        ], name
        assert config["python_version"] == "3.12" and config["use_anonymous_sproc"] is True
        assert config["packages"] == ["numpy", "pandas", "numba"], name


def test_a_missing_implicit_names_both_ways_to_provide_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "implicit" else real(name)
    )
    with pytest.raises(ModuleNotFoundError) as error:
        require_packages(["numpy", "implicit"])
    message = str(error.value)
    assert "implicit" in message and "numpy" not in message.split("\n", 1)[1]
    for way in (
        "DEFAULT_PYTHON_ARTIFACT_REPOSITORY = snowflake.snowpark.pypi_shared_repository",
        "SNOWFLAKE.PYPI_REPOSITORY_USER",
        "proactive_recs_snowflake_use_anonymous_sproc",
        "proactive_recs_snowflake_extra_imports",
    ):
        assert way in message


# ---------------------------------------------------------------- make snowflake-stage


def test_the_zip_is_the_same_bytes_for_the_same_sources_and_the_check_says_so(tmp_path):
    from proactive_recs_tools.snowflake_stage import build_zip, compare

    first = build_zip(tmp_path / "a" / "proactive_recs.zip")
    second = build_zip(tmp_path / "b" / "proactive_recs.zip")
    assert first.read_bytes() == second.read_bytes()
    assert compare(first, second) is None
    assert "no proactive_recs.zip" in compare(first, None)
    other = tmp_path / "c.zip"
    other.write_bytes(first.read_bytes()[:-1] + b"x")
    assert "not the installed library" in compare(first, other)


def test_the_stage_comes_from_the_project_var_and_a_key_pair_replaces_the_password(tmp_path):
    from proactive_recs_tools.snowflake_stage import connection_settings, project_stage

    assert project_stage() == "proactive_recs_stage"
    environ = {"SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "etl", "SNOWFLAKE_PASSWORD": "pw"}
    assert connection_settings(environ)["password"] == "pw"
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    with_key = connection_settings(
        {
            **environ,
            "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "secret",
        }
    )
    assert with_key["private_key_file"] == str(key)
    assert with_key["private_key_file_pwd"] == "secret" and "password" not in with_key
    with pytest.raises(ValueError, match="no file at"):
        connection_settings({**environ, "SNOWFLAKE_PRIVATE_KEY_PATH": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="SNOWFLAKE_ACCOUNT"):
        connection_settings({"SNOWFLAKE_USER": "etl"})
