"""Looking through the whole test database, for the secret-canary tests."""

from __future__ import annotations

from django.db import connection


def columns_containing(needle: str) -> list[str]:
    """Every `table.column` of every table whose value, read as text, contains `needle`."""
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            for column in connection.introspection.get_table_description(cursor, table):
                cursor.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE CAST("{column.name}" AS TEXT) LIKE %s', [f"%{needle}%"]
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column.name}")
    return hits
