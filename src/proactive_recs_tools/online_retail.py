"""Load the UCI "Online Retail" data set onto the package's raw source contract.

The data set (541,909 invoice lines of a UK gift retailer, CC BY 4.0, donated by
Daqing Chen, London South Bank University) is the project's real development and
evaluation data. This module maps it onto the five raw sources of ``docs/raw_data.md``
and writes them into a DuckDB file, every column as VARCHAR: the dbt staging layer
parses, validates and rejects, so the loader derives but never filters or fixes.

The mapping, its assumptions and the required attribution are in
``docs/online_retail.md``.

Usage::

    python -m proactive_recs_tools.online_retail \\
        --csv ../shared/datasets/online_retail/online_retail.csv.gz \\
        --duckdb proactive_recs.duckdb --schema online_retail
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb

from proactive_recs.contract import REQUIRED_COLUMNS

# src/proactive_recs/online_retail.py -> the repository root is two levels above src/.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CSV = REPO_ROOT / ".." / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
DEFAULT_DUCKDB = "proactive_recs.duckdb"
DEFAULT_SCHEMA = "online_retail"

# The raw file's header. Checked up front so a different export fails with a clear
# message instead of a binder error deep inside the mapping SQL.
CSV_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

# InvoiceDate is UK wall-clock time (GMT in winter, BST in summer).
SOURCE_TIMEZONE = "Europe/London"

# An item whose last sale falls within this many days of the end of the data set is
# treated as still on sale (available_until null); otherwise it is discontinued.
ACTIVE_WINDOW_DAYS = 60

# Output columns per table: the contract columns of docs/raw_data.md in contract
# order, then the extra columns this loader adds.
_EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "items": ("brand",),
    # the invoice (to group lines into orders) and the raw unit price
    "transactions": ("invoice_no", "unit_price"),
}
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    f"raw_{source}": required + _EXTRA_COLUMNS.get(source, ())
    for source, required in REQUIRED_COLUMNS.items()
}

# Country (as spelled in the data) -> IANA zone, only where one zone obviously covers
# (nearly) everyone. Countries spanning several zones (USA, Canada, Australia, Brazil)
# and non-countries ('Unspecified', 'European Community') are deliberately absent and
# get a null timezone: a wrong zone would schedule sends at night, a null one lets the
# package fall back to its default. Spain and Portugal map to their mainland zones
# (the Canaries, Azores and Madeira are a small minority); the Channel Islands keep
# UK time.
COUNTRY_TIMEZONES: dict[str, str] = {
    "Austria": "Europe/Vienna",
    "Bahrain": "Asia/Bahrain",
    "Belgium": "Europe/Brussels",
    "Channel Islands": "Europe/London",
    "Cyprus": "Asia/Nicosia",
    "Czech Republic": "Europe/Prague",
    "Denmark": "Europe/Copenhagen",
    "EIRE": "Europe/Dublin",
    "Finland": "Europe/Helsinki",
    "France": "Europe/Paris",
    "Germany": "Europe/Berlin",
    "Greece": "Europe/Athens",
    "Hong Kong": "Asia/Hong_Kong",
    "Iceland": "Atlantic/Reykjavik",
    "Israel": "Asia/Jerusalem",
    "Italy": "Europe/Rome",
    "Japan": "Asia/Tokyo",
    "Lebanon": "Asia/Beirut",
    "Lithuania": "Europe/Vilnius",
    "Malta": "Europe/Malta",
    "Netherlands": "Europe/Amsterdam",
    "Norway": "Europe/Oslo",
    "Poland": "Europe/Warsaw",
    "Portugal": "Europe/Lisbon",
    "RSA": "Africa/Johannesburg",
    "Saudi Arabia": "Asia/Riyadh",
    "Singapore": "Asia/Singapore",
    "Spain": "Europe/Madrid",
    "Sweden": "Europe/Stockholm",
    "Switzerland": "Europe/Zurich",
    "United Arab Emirates": "Asia/Dubai",
    "United Kingdom": "Europe/London",
}


# Online Retail has no category. One is derived from the description's words: the first
# rule whose keyword starts a word of the description wins (order matters: "CHRISTMAS
# CANDLE" is christmas, "LUNCH BAG" is a bag). Written for this project from the most
# frequent product nouns of the descriptions; 'other' when no rule matches.
CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE")),
    (
        "jewellery",
        ("NECKLACE", "BRACELET", "EARRING", "RING", "CHARM", "BEAD", "BROOCH", "DIAMANTE", "HAIR"),
    ),
    ("bags", ("BAG", "PURSE", "HANDBAG", "WASHBAG", "SHOPPER")),
    ("candles_lights", ("CANDLE", "T-LIGHT", "TEALIGHT", "LANTERN", "LIGHT", "LAMP")),
    (
        "tableware",
        (
            "MUG",
            "CUP",
            "BOWL",
            "PLATE",
            "SAUCER",
            "BEAKER",
            "CUTLERY",
            "TEAPOT",
            "JUG",
            "DISH",
            "NAPKIN",
            "COASTER",
            "GLASS",
            "TUMBLER",
            "STRAW",
        ),
    ),
    (
        "baking_kitchen",
        (
            "CAKE",
            "BAKING",
            "LUNCH",
            "JAR",
            "BOTTLE",
            "TRAY",
            "KITCHEN",
            "APRON",
            "TEA TOWEL",
            "SPOON",
            "JAM",
            "CHOPSTICK",
            "RECIPE",
        ),
    ),
    (
        "stationery_gifts",
        (
            "CARD",
            "NOTEBOOK",
            "SKETCHBOOK",
            "PEN",
            "PENCIL",
            "STICKER",
            "TAPE",
            "WRAP",
            "PAPER",
            "ENVELOPE",
            "TAG",
            "RIBBON",
            "CALENDAR",
            "BOOK",
            "ERASER",
        ),
    ),
    ("storage", ("BOX", "TIN", "BASKET", "CONTAINER", "STORAGE", "CASE", "CRATE")),
    ("garden", ("GARDEN", "PLANT", "POT", "WATERING", "BIRD", "PARASOL", "FLOWER")),
    (
        "toys_kids",
        (
            "TOY",
            "CHILDREN",
            "DOLL",
            "GAME",
            "PLAYHOUSE",
            "SPACEBOY",
            "JIGSAW",
            "BALL",
            "PUZZLE",
            "KIT",
            "CRAYON",
            "SKIPPING",
            "BUNNY",
            "TEDDY",
        ),
    ),
    (
        "decorations",
        (
            "DECORATION",
            "GARLAND",
            "BUNTING",
            "WREATH",
            "HANGING",
            "ORNAMENT",
            "BELL",
            "HEART",
            "STAR",
            "DOILY",
            "DOILEY",
            "DOILIES",
            "FEATHER",
        ),
    ),
    (
        "home_furnishing",
        (
            "CUSHION",
            "CLOCK",
            "FRAME",
            "MIRROR",
            "CABINET",
            "SIGN",
            "DOORMAT",
            "DOORSTOP",
            "HOOK",
            "HANGER",
            "CURTAIN",
            "RACK",
            "STAND",
            "COVER",
            "BLANKET",
            "THROW",
            "SHELF",
            "DRAWER",
            "MAGNET",
            "TOWEL",
        ),
    ),
)


def category_sql(title_column: str) -> str:
    """SQL CASE deriving an item's category from its title with :data:`CATEGORY_RULES`
    (a keyword must start a word: ' RING' matches 'RINGS' but not 'STRING')."""
    padded = f"(' ' || upper(coalesce({title_column}, '')))"
    whens = []
    for category, keywords in CATEGORY_RULES:
        tests = " OR ".join(f"{padded} LIKE '% {word}%'" for word in keywords)
        whens.append(f"WHEN {tests} THEN '{category}'")
    return (
        f"CASE WHEN {title_column} IS NULL THEN CAST(NULL AS VARCHAR) "
        + " ".join(whens)
        + " ELSE 'other' END"
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# Every field as text, no type sniffing: dirt must reach staging unchanged. Dialect is
# pinned so an odd sample cannot make the sniffer guess another delimiter; malformed
# lines raise (the default) rather than being dropped.
_READ_CSV = (
    "read_csv(?, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"')"
)


def _check_header(con: duckdb.DuckDBPyConnection, csv_path: str) -> None:
    rows = con.execute(f"DESCRIBE SELECT * FROM {_READ_CSV}", [csv_path]).fetchall()
    found = [row[0] for row in rows]
    missing = [c for c in CSV_COLUMNS if c not in found]
    if missing:
        raise ValueError(
            f"{csv_path}: not an Online Retail export, missing columns {missing} (found {found})"
        )


# Text helpers used by the mapping SQL. Timestamps are written as UTC with an explicit
# offset, numbers as plain decimal text without trailing zeros ('15.3', not '15.300').
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO _utc_text(ts) AS
    strftime(ts, '%Y-%m-%d %H:%M:%S') || '+00:00';
CREATE OR REPLACE TEMP MACRO _plain_decimal(d) AS
    CASE
        WHEN contains(CAST(d AS VARCHAR), '.')
            THEN rtrim(rtrim(CAST(d AS VARCHAR), '0'), '.')
        ELSE CAST(d AS VARCHAR)
    END;
-- UK wall-clock text -> naive UTC timestamp. Null (the caller then passes the raw
-- text through) when it does not parse, so staging rejects it as unparseable_value,
-- and when it already carries an offset, which staging honours; any other shape
-- DuckDB reads as a timestamp is converted here, or staging would take it for UTC.
CREATE OR REPLACE TEMP MACRO _london_to_utc(txt) AS
    CASE
        WHEN NOT regexp_matches(
            trim(txt), '\\d:\\d\\d(:[0-9.]+)?\\s*(Z|[+-]\\d\\d(:?\\d\\d)?)$', 'i'
        ) THEN timezone(
            'UTC', timezone('{SOURCE_TIMEZONE}', try_cast(trim(txt) AS TIMESTAMP))
        )
    END;
"""

# One parsed row per raw line, in file order. Raw text is kept next to the parsed
# values: outputs carry the raw text wherever the contract wants it unchanged.
_LINES_SQL = f"""
CREATE OR REPLACE TEMP TABLE _or_lines AS
SELECT
    InvoiceNo AS invoice_no,
    -- '17850.0' -> '17850'; anything else that is not blank passes through as dirt
    nullif(regexp_replace(trim(CustomerID), '\\.0+$', ''), '') AS user_id,
    nullif(trim(StockCode), '') AS item_id,
    nullif(trim(Description), '') AS title,
    Quantity AS quantity_raw,
    UnitPrice AS unit_price_raw,
    InvoiceDate AS invoice_date_raw,
    nullif(trim(Country), '') AS country,
    _london_to_utc(InvoiceDate) AS occurred_utc,
    coalesce(upper(trim(InvoiceNo)) LIKE 'C%', false) AS is_cancellation,
    -- wide decimals: exact arithmetic, and quantity * price cannot overflow
    try_cast(trim(Quantity) AS DECIMAL(38, 9)) AS quantity_num,
    try_cast(trim(UnitPrice) AS DECIMAL(38, 9)) AS price_num
FROM {_READ_CSV}
"""

_TRANSACTIONS_SQL = """
SELECT
    user_id,
    item_id,
    -- unparseable dates keep their raw text so staging rejects them as unparseable_value
    coalesce(_utc_text(occurred_utc), invoice_date_raw) AS occurred_at,
    CASE WHEN is_cancellation THEN 'cancellation' ELSE 'purchase' END AS event_type,
    quantity_raw AS quantity,
    _plain_decimal(try(quantity_num * price_num)) AS amount,
    invoice_no,
    unit_price_raw AS unit_price
FROM _or_lines
"""

_USERS_SQL = """
WITH customer_lines AS (
    SELECT * FROM _or_lines WHERE user_id IS NOT NULL
),
first_seen AS (
    SELECT user_id, min(occurred_utc) AS joined_utc
    FROM customer_lines
    GROUP BY user_id
),
-- most frequent country; ties broken alphabetically so reloads are deterministic
main_country AS (
    SELECT user_id, country
    FROM customer_lines
    WHERE country IS NOT NULL
    GROUP BY user_id, country
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY count(*) DESC, country) = 1
)
SELECT
    f.user_id,
    CAST(NULL AS VARCHAR) AS email,
    _utc_text(f.joined_utc) AS joined_at,
    c.country,
    tz.timezone,
    CAST(NULL AS VARCHAR) AS email_opt_in,
    CAST(NULL AS VARCHAR) AS unsubscribed_at
FROM first_seen AS f
LEFT JOIN main_country AS c USING (user_id)
LEFT JOIN _or_country_timezones AS tz ON tz.country = c.country
"""

_ITEMS_SQL = f"""
WITH item_lines AS (
    SELECT
        *,
        -- a sale: the lines the price is computed from
        NOT is_cancellation AND quantity_num > 0 AND price_num > 0 AS is_sale
    FROM _or_lines
    WHERE item_id IS NOT NULL
),
data_end AS (
    SELECT max(occurred_utc) AS end_utc FROM _or_lines
),
-- most frequent description (trimmed, so 'X ' and 'X' count together); ties
-- broken alphabetically
titles AS (
    SELECT item_id, title
    FROM item_lines
    WHERE title IS NOT NULL
    GROUP BY item_id, title
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY count(*) DESC, title) = 1
),
stats AS (
    SELECT
        item_id,
        median(price_num) FILTER (WHERE quantity_num > 0 AND price_num > 0) AS price,
        -- codes never sold (only returns, write-offs) fall back to any line, so every
        -- item still gets a finite window instead of a null (= open) one
        coalesce(min(occurred_utc) FILTER (WHERE is_sale), min(occurred_utc)) AS first_sale,
        coalesce(max(occurred_utc) FILTER (WHERE is_sale), max(occurred_utc)) AS last_sale
    FROM item_lines
    GROUP BY item_id
)
SELECT
    s.item_id,
    t.title,
    {category_sql("t.title")} AS category,
    _plain_decimal(s.price) AS price,
    _utc_text(s.first_sale) AS available_from,
    CASE
        WHEN s.last_sale >= d.end_utc - INTERVAL {ACTIVE_WINDOW_DAYS} DAY THEN NULL
        ELSE _utc_text(s.last_sale + INTERVAL 1 DAY)
    END AS available_until,
    CAST(NULL AS VARCHAR) AS url,
    CAST(NULL AS VARCHAR) AS image_url,
    CAST(NULL AS VARCHAR) AS brand
FROM stats AS s
CROSS JOIN data_end AS d
LEFT JOIN titles AS t USING (item_id)
"""


def load_into(
    con: duckdb.DuckDBPyConnection,
    csv_path: str | os.PathLike[str],
    schema: str = DEFAULT_SCHEMA,
) -> dict[str, int]:
    """Write the five raw tables into ``schema`` on ``con``; return rows per table.

    The schema is created if missing and the tables are replaced, all in one
    transaction so a failed load leaves the previous tables in place.
    """
    csv_path = str(csv_path)
    if not Path(csv_path).is_file():
        raise FileNotFoundError(f"Online Retail CSV not found: {csv_path}")
    _check_header(con, csv_path)

    qschema = _quote_ident(schema)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_MACROS)
        con.execute(_LINES_SQL, [csv_path])
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _or_country_timezones (country VARCHAR, timezone VARCHAR)"
        )
        con.executemany(
            "INSERT INTO _or_country_timezones VALUES (?, ?)", list(COUNTRY_TIMEZONES.items())
        )
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {qschema}")

        # (table, mapping query, row order): a stable order makes reloads diffable;
        # transactions keep the file's line order.
        mapped = (
            ("raw_users", _USERS_SQL, "ORDER BY joined_at NULLS LAST, user_id"),
            ("raw_items", _ITEMS_SQL, "ORDER BY item_id"),
            ("raw_transactions", _TRANSACTIONS_SQL, ""),
        )
        for table, select, order in mapped:
            # The outer projection pins column order and forces VARCHAR on every column,
            # whatever type a derivation happens to produce.
            cols = ", ".join(
                f"CAST({_quote_ident(c)} AS VARCHAR) AS {_quote_ident(c)}"
                for c in TABLE_COLUMNS[table]
            )
            con.execute(
                f"CREATE OR REPLACE TABLE {qschema}.{_quote_ident(table)} AS "
                f"SELECT {cols} FROM ({select}) AS mapped {order}"
            )
        # No notification history in this data set: empty tables with the contract
        # columns, so the package's sources resolve.
        for table in ("raw_notification_sends", "raw_notification_events"):
            cols = ", ".join(f"{_quote_ident(c)} VARCHAR" for c in TABLE_COLUMNS[table])
            con.execute(f"CREATE OR REPLACE TABLE {qschema}.{_quote_ident(table)} ({cols})")

        con.execute("DROP TABLE _or_lines")
        con.execute("DROP TABLE _or_country_timezones")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise

    return {
        table: con.execute(f"SELECT count(*) FROM {qschema}.{_quote_ident(table)}").fetchone()[0]
        for table in TABLE_COLUMNS
    }


def load(
    csv_path: str | os.PathLike[str],
    duckdb_path: str | os.PathLike[str],
    schema: str = DEFAULT_SCHEMA,
) -> dict[str, int]:
    """Open (or create) the DuckDB file at ``duckdb_path`` and load into it."""
    Path(duckdb_path).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duckdb_path)) as con:
        return load_into(con, csv_path, schema)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proactive_recs_tools.online_retail",
        description="Load UCI Online Retail onto the raw source contract (see "
        "docs/online_retail.md).",
    )
    parser.add_argument(
        "--csv", default=str(DEFAULT_CSV), help="gzipped CSV (default: %(default)s)"
    )
    parser.add_argument(
        "--duckdb",
        default=os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB,
        help="DuckDB file to write (default: $DUCKDB_PATH or %(default)s)",
    )
    parser.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help="target schema (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    counts = load(args.csv, args.duckdb, args.schema)
    elapsed = time.perf_counter() - started
    for table, rows in counts.items():
        print(f"{args.schema}.{table}: {rows:,} rows")
    print(f"loaded {args.csv} into {args.duckdb} in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
