"""The SQLite statements in PostgreSQL's dialect (dirac_like/store/postgres.py's to_postgres):
pure text, no server."""

from __future__ import annotations

from dirac_like.store.postgres import to_postgres


def test_cast_to_integer_truncates_as_in_sqlite_even_around_calls_and_brackets() -> None:
    # PostgreSQL's CAST rounds (2.5 -> 3); SQLite's truncates (2.5 -> 2): floor for positives
    assert to_postgres("SELECT CAST(start / 86400 AS INTEGER)") == "SELECT floor(start / 86400)"
    assert to_postgres("SELECT ? + CAST((start - ?) / ? AS INTEGER) * ?") == (
        "SELECT %s + floor((start - %s) / %s) * %s"
    )
    assert to_postgres("SELECT CAST(min(start) / 86400 AS INTEGER) * 86400.0 FROM t") == (
        "SELECT floor(min(start) / 86400) * 86400.0 FROM t"
    )
    assert to_postgres("SELECT CAST(a AS INTEGER), CAST(b AS INTEGER)") == (
        "SELECT floor(a), floor(b)"
    )


def test_placeholders_and_percent_signs() -> None:
    assert to_postgres("SELECT 1 FROM t WHERE a LIKE '%x' AND b = ?") == (
        "SELECT 1 FROM t WHERE a LIKE '%%x' AND b = %s"
    )
