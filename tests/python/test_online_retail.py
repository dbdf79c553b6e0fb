"""Tests for the Online Retail loader (proactive_recs_tools.online_retail)."""

from __future__ import annotations

import gzip
import zoneinfo
from pathlib import Path

import duckdb
import pytest

from proactive_recs_tools import online_retail

REAL_CSV = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "datasets"
    / "online_retail"
    / "online_retail.csv.gz"
)

# One line per case the mapping has to get right (see docs/online_retail.md).
FIXTURE_CSV = """\
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER ,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527.0,Unspecified
550001,85123A,WHITE HANGING HEART T-LIGHT HOLDER,2,2011-06-01 10:00:00,2.95,,United Kingdom
550002,85123A,CREAM HANGING HEART T-LIGHT HOLDER,1,2011-06-02 11:00:00,3.00,12345.0,France
550003,85123a,WHITE HANGING HEART T-LIGHT HOLDER,1,2011-06-03 12:00:00,2.95,17850.0,United Kingdom
550004,21000,BROKEN LINE,abc,not a date,1.00,17850.0,United Kingdom
545000,22423,"REGENCY CAKESTAND, 3 TIER",1,2011-05-01 09:00:00,12.75,12345.0,Germany
581587,22423,"REGENCY CAKESTAND, 3 TIER",2,2011-12-09 12:50:00,12.50,12345.0,France
"""


def _write_fixture(tmp_path: Path) -> Path:
    path = tmp_path / "online_retail.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(FIXTURE_CSV)
    return path


def _rows(con: duckdb.DuckDBPyConnection, table: str, order: str) -> list[dict]:
    cur = con.execute(f"SELECT * FROM online_retail.{table} ORDER BY {order}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture
def loaded(tmp_path: Path):
    db = tmp_path / "out" / "test.duckdb"
    counts = online_retail.load(_write_fixture(tmp_path), db)
    with duckdb.connect(str(db), read_only=True) as con:
        yield counts, con


def test_counts_and_columns(loaded):
    counts, con = loaded
    assert counts == {
        "raw_users": 3,
        "raw_items": 5,
        "raw_transactions": 8,
        "raw_notification_sends": 0,
        "raw_notification_events": 0,
    }
    columns = con.execute(
        """
        SELECT table_name, column_name, data_type
        FROM information_schema.columns
        WHERE table_schema = 'online_retail'
        ORDER BY table_name, ordinal_position
        """
    ).fetchall()
    assert {t for t, _, _ in columns} == set(online_retail.TABLE_COLUMNS)
    for table, expected in online_retail.TABLE_COLUMNS.items():
        assert tuple(c for t, c, _ in columns if t == table) == expected
    assert {dtype for _, _, dtype in columns} == {"VARCHAR"}


def test_transactions(loaded):
    _, con = loaded
    rows = _rows(con, "raw_transactions", "invoice_no")
    by_invoice = {r["invoice_no"]: r for r in rows}
    # GMT winter line; float customer id; amount as plain decimal text
    assert by_invoice["536365"] == {
        "user_id": "17850",
        "item_id": "85123A",
        "occurred_at": "2010-12-01 08:26:00+00:00",
        "event_type": "purchase",
        "quantity": "6",
        "amount": "15.3",
        "invoice_no": "536365",
        "unit_price": "2.55",
    }
    # cancellation kept, typed as such; non-product code kept
    assert by_invoice["C536379"]["event_type"] == "cancellation"
    assert by_invoice["C536379"]["item_id"] == "D"
    assert by_invoice["C536379"]["amount"] == "-27.5"
    # null customer stays null; BST summer time 10:00 London is 09:00 UTC
    assert by_invoice["550001"]["user_id"] is None
    assert by_invoice["550001"]["occurred_at"] == "2011-06-01 09:00:00+00:00"
    # stock code case kept
    assert by_invoice["550003"]["item_id"] == "85123a"
    # dirt survives for staging to reject: raw date text, raw quantity, no amount
    assert by_invoice["550004"]["occurred_at"] == "not a date"
    assert by_invoice["550004"]["quantity"] == "abc"
    assert by_invoice["550004"]["amount"] is None


def test_users(loaded):
    _, con = loaded
    users = {r["user_id"]: r for r in _rows(con, "raw_users", "user_id")}
    assert set(users) == {"17850", "14527", "12345"}
    # first line (the BST one in Germany), most frequent country (France 2 : Germany 1)
    assert users["12345"] == {
        "user_id": "12345",
        "email": None,
        "joined_at": "2011-05-01 08:00:00+00:00",
        "country": "France",
        "timezone": "Europe/Paris",
        "email_opt_in": None,
        "unsubscribed_at": None,
    }
    # an unparseable date does not break joined_at
    assert users["17850"]["joined_at"] == "2010-12-01 08:26:00+00:00"
    assert users["17850"]["timezone"] == "Europe/London"
    # a customer seen only on a cancellation is still a user; no zone for 'Unspecified'
    assert users["14527"]["country"] == "Unspecified"
    assert users["14527"]["timezone"] is None


def test_items(loaded):
    _, con = loaded
    items = {r["item_id"]: r for r in _rows(con, "raw_items", "item_id")}
    assert set(items) == {"85123A", "85123a", "D", "22423", "21000"}
    # most frequent (trimmed) description; median of 2.55, 2.95, 3.00; first sale;
    # last sale 2011-06-02 10:00 UTC is > 60 days before the end -> discontinued a day later
    assert items["85123A"] == {
        "item_id": "85123A",
        "title": "WHITE HANGING HEART T-LIGHT HOLDER",
        "category": "candles_lights",  # derived from the title (CATEGORY_RULES)
        "price": "2.95",
        "available_from": "2010-12-01 08:26:00+00:00",
        "available_until": "2011-06-03 10:00:00+00:00",
        "url": None,
        "image_url": None,
        "brand": None,
    }
    # sold on the last day of the data set: still available; even-count median
    assert items["22423"]["title"] == "REGENCY CAKESTAND, 3 TIER"
    assert items["22423"]["price"] == "12.625"
    assert items["22423"]["available_from"] == "2011-05-01 08:00:00+00:00"
    assert items["22423"]["available_until"] is None
    # never sold (only a cancellation): no price, window from its lines
    assert items["D"]["price"] is None
    assert items["D"]["available_from"] == "2010-12-01 09:41:00+00:00"
    assert items["D"]["available_until"] == "2010-12-02 09:41:00+00:00"
    # no parseable date or quantity at all: nulls, not an error
    assert items["21000"]["price"] is None
    assert items["21000"]["available_from"] is None


def test_reload_replaces_tables(tmp_path: Path):
    csv = _write_fixture(tmp_path)
    db = tmp_path / "twice.duckdb"
    online_retail.load(csv, db, schema="other")
    assert online_retail.load(csv, db, schema="other")["raw_transactions"] == 8


def test_cli(tmp_path: Path, capsys):
    csv = _write_fixture(tmp_path)
    db = tmp_path / "cli.duckdb"
    assert online_retail.main(["--csv", str(csv), "--duckdb", str(db), "--schema", "s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "s.raw_users: 3 rows",
        "s.raw_items: 5 rows",
        "s.raw_transactions: 8 rows",
        "s.raw_notification_sends: 0 rows",
        "s.raw_notification_events: 0 rows",
    ]


def test_wrong_header_is_rejected(tmp_path: Path):
    csv = tmp_path / "other.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        online_retail.load(csv, tmp_path / "x.duckdb")


def test_country_timezones_are_valid_iana_zones():
    for zone in online_retail.COUNTRY_TIMEZONES.values():
        zoneinfo.ZoneInfo(zone)


@pytest.mark.online_retail
@pytest.mark.skipif(not REAL_CSV.is_file(), reason="../shared/datasets/online_retail absent")
def test_real_file(tmp_path: Path):
    db = tmp_path / "real.duckdb"
    counts = online_retail.load(REAL_CSV, db)
    assert counts["raw_transactions"] == 541_909
    assert counts["raw_users"] == 4_372
    assert counts["raw_items"] == 4_070
    with duckdb.connect(str(db), read_only=True) as con:
        (cancellations, null_users, non_utc) = con.execute(
            """
            SELECT
                count(*) FILTER (WHERE event_type = 'cancellation'),
                count(*) FILTER (WHERE user_id IS NULL),
                count(*) FILTER (WHERE occurred_at NOT LIKE '%+00:00')
            FROM online_retail.raw_transactions
            """
        ).fetchone()
    assert cancellations == 9_288
    assert null_users == 135_080
    assert non_utc == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011-06-01 10:00:00", "2011-06-01 09:00:00"),  # BST
        ("2010-12-01 08:26:00", "2010-12-01 08:26:00"),  # GMT
        ("2011-06-01T10:00", "2011-06-01 09:00:00"),  # other shapes are London time too
        ("2011-06-01 10:00:00+01:00", None),  # explicit offset: left for staging
        ("2011-06-01 10:00:00Z", None),
        ("not a date", None),
        (None, None),
    ],
)
def test_london_to_utc(text, expected):
    con = duckdb.connect()
    con.execute(online_retail._MACROS)
    (value,) = con.execute("SELECT CAST(_london_to_utc(?) AS VARCHAR)", [text]).fetchone()
    assert value == expected
