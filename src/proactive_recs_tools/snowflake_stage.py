"""Ship the library to a Snowflake stage so the dbt Python models can import it.

    python -m proactive_recs_tools.snowflake_stage [--stage NAME] [--zip-only | --check]

Builds ``target/proactive_recs.zip`` (the ``proactive_recs`` package, importable from the
zip root as Snowflake's IMPORTS expect). Then, unless ``--zip-only``, creates the stage if
needed, PUTs the zip there and reads it back (GET) to check that the staged bytes are the
zip of the installed library; ``--check`` only does the reading back, to find out whether a
stage still holds the installed version. The stage is the dbt var
``proactive_recs_snowflake_stage`` as dbt_project.yml sets it, unless ``--stage`` names
another (use the same value you pass to dbt with ``--vars``).

The connection comes from the same SNOWFLAKE_* environment variables as the ``snowflake``
target in profiles.yml: a password, an authenticator, or a key pair
(SNOWFLAKE_PRIVATE_KEY_PATH and, if the key is encrypted, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import yaml

# the runtime package only: the tools never reach the warehouse
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "proactive_recs"
PROJECT_FILE = Path(__file__).resolve().parents[2] / "dbt_project.yml"
STAGE_VAR = "proactive_recs_snowflake_stage"
# A fixed time stamp for every member: the same sources give the same bytes, so a staged
# zip can be compared with a fresh build byte for byte.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def build_zip(out: Path) -> Path:
    """Zip the package's .py files under ``proactive_recs/``; the same sources always give
    the same bytes (sorted members, fixed time stamps and permissions)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_DIR.rglob("*.py")):
            member = zipfile.ZipInfo(
                str(Path("proactive_recs") / path.relative_to(PACKAGE_DIR)), _ZIP_TIME
            )
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            archive.writestr(member, path.read_bytes())
    return out


def project_stage(project_file: Path = PROJECT_FILE) -> str:
    """The stage dbt_project.yml sets in the var ``proactive_recs_snowflake_stage``."""
    project = yaml.safe_load(project_file.read_text())
    stage = (project.get("vars") or {}).get(STAGE_VAR)
    if not stage:
        raise ValueError(f"{project_file}: the var {STAGE_VAR} is not set")
    return str(stage)


def connection_settings(environ=os.environ) -> dict:
    """snowflake.connector.connect arguments from the SNOWFLAKE_* variables (profiles.yml's
    snowflake target reads the same ones)."""
    missing = [name for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not environ.get(name)]
    if missing:
        raise ValueError(f"set {' and '.join(missing)} (see profiles.yml, target snowflake)")
    settings = {
        "account": environ["SNOWFLAKE_ACCOUNT"],
        "user": environ["SNOWFLAKE_USER"],
        "role": environ.get("SNOWFLAKE_ROLE") or None,
        "warehouse": environ.get("SNOWFLAKE_WAREHOUSE") or None,
        "database": environ.get("SNOWFLAKE_DATABASE") or None,
        "schema": environ.get("SNOWFLAKE_SCHEMA", "proactive_recs"),
    }
    key_path = environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")
    if key_path:
        if not Path(key_path).expanduser().is_file():
            raise ValueError(f"SNOWFLAKE_PRIVATE_KEY_PATH: no file at {key_path}")
        settings["private_key_file"] = str(Path(key_path).expanduser())
        if environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
            settings["private_key_file_pwd"] = environ["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"]
    else:
        settings["password"] = environ.get("SNOWFLAKE_PASSWORD") or None
        settings["authenticator"] = environ.get("SNOWFLAKE_AUTHENTICATOR", "snowflake")
    return settings


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compare(local: Path, staged: Path | None) -> str | None:
    """None when ``staged`` holds the same bytes as ``local``, else what differs."""
    if staged is None or not Path(staged).is_file():
        return "the stage holds no proactive_recs.zip"
    if digest(local) == digest(staged):
        return None
    return (
        f"the staged zip (sha256 {digest(staged)[:12]}) is not the installed library's "
        f"(sha256 {digest(local)[:12]}): run make snowflake-stage"
    )


def _staged_copy(cursor, stage: str, name: str, into: Path) -> Path | None:
    cursor.execute(f"get @{stage}/{name} file://{into.resolve()}/")
    found = list(into.glob(name))
    return found[0] if found else None


def upload(zip_path: Path, stage: str, *, check_only: bool = False) -> str | None:
    """PUT the zip (unless ``check_only``) and read it back; returns what differs, or None."""
    import snowflake.connector

    with snowflake.connector.connect(**connection_settings()) as connection:
        with connection.cursor() as cursor:
            if not check_only:
                cursor.execute(f"create stage if not exists {stage}")
                cursor.execute(
                    f"put file://{zip_path.resolve()} @{stage} auto_compress=false overwrite=true"
                )
            with tempfile.TemporaryDirectory() as scratch:
                staged = _staged_copy(cursor, stage, zip_path.name, Path(scratch))
                return compare(zip_path, staged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default=None, help=f"default: the dbt var {STAGE_VAR}")
    parser.add_argument("--zip", default="target/proactive_recs.zip", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--zip-only", action="store_true", help="build the zip, do not upload")
    mode.add_argument("--check", action="store_true", help="compare the staged zip, no upload")
    args = parser.parse_args(argv)
    stage = args.stage or project_stage()
    zip_path = build_zip(args.zip)
    print(f"built {zip_path} (sha256 {digest(zip_path)[:12]})")
    if args.zip_only:
        return 0
    problem = upload(zip_path, stage, check_only=args.check)
    if problem:
        print(f"@{stage}: {problem}")
        return 1
    print(f"@{stage}/{zip_path.name} holds the installed library")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
