"""engine_expect_rows(matched, wanted, code, what): raises (SQLSTATE `code`, `what` as the message)
unless `matched = wanted`. The update engine's writes are compare-and-set: its channel-row update counts the
rows it matched in the same statement, so a row that moved under the owner aborts its transaction even
inside a pipeline, where the writer reads no result before the commit (channels_app.engine.journal).
Postgres only: the embedded SQLite writer reads each update's row count itself."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION engine_expect_rows(matched bigint, wanted bigint, code text, what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF matched IS DISTINCT FROM wanted THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = what;
    END IF;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS engine_expect_rows(bigint, bigint, text, text)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0007_swaps"),
    ]

    operations = [migrations.RunPython(create, drop)]
