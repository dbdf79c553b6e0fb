"""Shared fixtures: paths, and running dbt against scratch DuckDB files.

dbt runs in a subprocess with its own target/log directories, so tests never collide with
each other or with a user's `make demo` output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import settings

# Property tests draw new examples on every developer run (that is how they find bugs: a
# random run found the shared-mailbox gap); CI replays a fixed set, so that a landing is
# never decided by the draw. .ci/run sets HYPOTHESIS_PROFILE=ci.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[2]
ONLINE_RETAIL_CSV = REPO.parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
DBT = str(Path(sys.executable).parent / "dbt")
# The demo's dbt vars (read-only: tests lay their own over a copy, {**DEMO_VARS, ...}).
DEMO_VARS = yaml.safe_load((REPO / "vars" / "demo.yml").read_text())


def run_dbt(
    args: list[str], duckdb_path: Path, vars_: dict | None = None
) -> subprocess.CompletedProcess:
    """Run one dbt command on the project against ``duckdb_path``; never raises on failure."""
    work = duckdb_path.parent
    command = [DBT, *args, "--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    if vars_:
        command += ["--vars", json.dumps(vars_)]
    env = {**os.environ, "DUCKDB_PATH": str(duckdb_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """A DuckDB file with the whole pipeline built on the demo seeds.

    `make test` builds target/ci_demo.duckdb first and passes it in PROACTIVE_RECS_DEMO_DB,
    so the suite does not build it twice; run alone, pytest builds its own.
    """
    given = os.environ.get("PROACTIVE_RECS_DEMO_DB")
    if given:
        return Path(given)
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    seeded = run_dbt(["seed", "--select", "tag:demo_data", "--full-refresh"], path, DEMO_VARS)
    assert seeded.returncode == 0, seeded.stdout[-4000:]
    built = run_dbt(["build", "--exclude", "tag:demo_data"], path, DEMO_VARS)
    assert built.returncode == 0, built.stdout[-4000:]
    return path


@pytest.fixture
def demo_con(demo_db):
    with duckdb.connect(str(demo_db), read_only=True) as con:
        yield con


@pytest.fixture
def demo_copy(demo_db, tmp_path):
    """A private copy of the demo database, for tests that build on it."""
    copy = tmp_path / "demo_copy.duckdb"
    copy.write_bytes(demo_db.read_bytes())
    return copy
