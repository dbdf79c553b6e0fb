"""Ship the library to a Snowflake stage so the dbt Python models can import it.

    python -m proactive_recs_tools.snowflake_stage [--stage proactive_recs_stage] [--zip-only]

Builds ``target/proactive_recs.zip`` (the ``proactive_recs`` package, importable from the
zip root as Snowflake's IMPORTS expect) and, unless ``--zip-only``, creates the stage if
needed and PUTs the zip there with the connection settings of the ``snowflake`` target in
profiles.yml (SNOWFLAKE_* environment variables). The models' config
``imports: ['@<stage>/proactive_recs.zip']`` (dbt_project.yml) then picks it up.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

# the runtime package only: the tools never reach the warehouse
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "proactive_recs"


def build_zip(out: Path) -> Path:
    """Zip the package's .py files under ``proactive_recs/``; deterministic order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_DIR.rglob("*.py")):
            archive.write(path, Path("proactive_recs") / path.relative_to(PACKAGE_DIR))
    return out


def upload(zip_path: Path, stage: str) -> None:
    """Create the stage if missing and PUT the zip (needs the snowflake extra and an account)."""
    import snowflake.connector

    connection = snowflake.connector.connect(
        account=os.environ["SNOWFLAKE_ACCOUNT"],
        user=os.environ["SNOWFLAKE_USER"],
        password=os.environ.get("SNOWFLAKE_PASSWORD"),
        authenticator=os.environ.get("SNOWFLAKE_AUTHENTICATOR", "snowflake"),
        role=os.environ.get("SNOWFLAKE_ROLE") or None,
        warehouse=os.environ.get("SNOWFLAKE_WAREHOUSE"),
        database=os.environ.get("SNOWFLAKE_DATABASE"),
        schema=os.environ.get("SNOWFLAKE_SCHEMA", "proactive_recs"),
    )
    with connection.cursor() as cursor:
        cursor.execute(f"create stage if not exists {stage}")
        cursor.execute(
            f"put file://{zip_path.resolve()} @{stage} auto_compress=false overwrite=true"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="proactive_recs_stage")
    parser.add_argument("--zip", default="target/proactive_recs.zip", type=Path)
    parser.add_argument("--zip-only", action="store_true", help="build the zip, do not upload")
    args = parser.parse_args(argv)
    zip_path = build_zip(args.zip)
    print(f"built {zip_path}")
    if not args.zip_only:
        upload(zip_path, args.stage)
        print(f"uploaded to @{args.stage}/{zip_path.name}")


if __name__ == "__main__":
    main()
