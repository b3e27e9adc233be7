"""Row reads and writes for the channel update path, without the ORM's per-call query compilation.

Building and compiling a queryset costs the node about ten times the database round trip it leads to
(a channel row lock: ~0.5 ms of CPU through the ORM, ~0.05 ms as plain SQL), and every payment runs
dozens of them. The statements here are built once per model and column set from the models' own
metadata; values go through each field's own `get_db_prep_save` and come back through the backend's
and the field's converters, so a row read or written here is the row the ORM would read or write.
They work on Postgres and on SQLite (the embedded default), inside the caller's transaction.

Only plain equality lookups, whole-row reads and column updates by primary key: anything richer stays
with the ORM.
"""

# Statements are assembled from model metadata (quoted identifiers) only; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.utils import timezone

M = TypeVar("M", bound=Model)

_Converter = Callable[[Any, Any, Any], Any]


def _q(name: str) -> str:
    return str(connection.ops.quote_name(name))


def table(model: type[Model]) -> str:
    """The model's table name, quoted for SQL written by hand."""
    return _q(model._meta.db_table)


def _db() -> Any:
    """This thread's database connection (resolved once per call here: each attribute read through
    `django.db.connection` looks the thread's connection up again)."""
    return connections[DEFAULT_DB_ALIAS]


def _cursor(db: Any) -> Any:
    """This thread's cursor on its database connection, made once per connection: making a cursor
    (Django's wrapper and the driver's) cost about as much as the statement it ran. Each statement
    still goes through Django's checks and error translation (a broken transaction refuses it, an
    integrity error is Django's `IntegrityError`)."""
    if db.queries_logged:  # DEBUG, or a test counting queries: Django's logging cursor
        return db.cursor()
    raw = db.connection
    cached = getattr(db, "_rows_cursor", None)
    if (
        raw is not None
        and cached is not None
        and cached[0] is raw
        and not getattr(cached[1], "closed", False)
    ):
        return cached[1]
    cursor = db.cursor()  # opens the connection when needed
    db._rows_cursor = (db.connection, cursor)
    return cursor


_Plan = tuple[tuple[list[_Converter], Any], ...]


def _select(model: type[Model], fields: list[Any]) -> tuple[str, _Plan]:
    """(SELECT those fields' columns FROM table, per column its converters and column expression:
    the backend's converters, then the field's, as the ORM's compiler applies them)."""
    db_table = model._meta.db_table
    select = f"SELECT {', '.join(_q(f.column) for f in fields)} FROM {_q(db_table)}"
    plan = []
    for field in fields:
        column = field.get_col(db_table)
        converters = list(connection.ops.get_db_converters(column)) + list(
            column.get_db_converters(connection)
        )
        plan.append((converters, column))
    return select, tuple(plan)


@cache
def _read_plan(model: type[Model]) -> tuple[str, list[str], _Plan]:
    """(SELECT every column FROM table, the fields' attnames, the columns' conversions)."""
    fields = list(model._meta.concrete_fields)
    select, plan = _select(model, fields)
    return select, [f.attname for f in fields], plan


@cache
def _values_plan(model: type[Model], names: tuple[str, ...]) -> tuple[str, _Plan]:
    return _select(model, [model._meta.get_field(name) for name in names])


def _convert(row: tuple[Any, ...], plan: _Plan, db: Any) -> list[Any]:
    converted = []
    for value, (converters, column) in zip(row, plan, strict=True):
        for convert in converters:
            value = convert(value, column, db)
        converted.append(value)
    return converted


def _instance(model: type[M], row: tuple[Any, ...], db: Any) -> M:
    _, names, plan = _read_plan(model)
    return model.from_db(db.alias, names, _convert(row, plan, db))


@cache
def _where(model: type[Model], columns: tuple[str, ...]) -> str:
    meta = model._meta
    return " AND ".join(
        f"{_q(meta.pk.column if name == 'pk' else meta.get_field(name).column)} = %s" for name in columns
    )


def _prep(model: type[Model], values: Mapping[str, Any], db: Any) -> list[Any]:
    meta = model._meta
    return [
        (meta.pk if name == "pk" else meta.get_field(name)).get_db_prep_save(value, db)
        for name, value in values.items()
    ]


def get(model: type[M], *, for_update: bool = False, **equal: Any) -> M | None:
    """The one row whose fields equal `equal` (None if there is none), locked with `for_update`."""
    db = _db()
    select, _, _ = _read_plan(model)
    sql = f"{select} WHERE {_where(model, tuple(equal))}"
    if for_update and db.features.has_select_for_update:
        sql += " FOR UPDATE"
    cursor = _cursor(db)
    cursor.execute(sql, _prep(model, equal, db))
    row = cursor.fetchone()
    return None if row is None else _instance(model, row, db)


@cache
def _related_plan(model: type[Model], relations: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """SELECT the row of `model` (alias m) and the rows its foreign keys `relations` point to (LEFT
    JOINs, aliases r0, r1, ...), WHERE m's `columns` equal parameters."""
    meta = model._meta
    parts = [", ".join(f"m.{_q(f.column)}" for f in meta.concrete_fields)]
    joins = []
    for index, name in enumerate(relations):
        field = meta.get_field(name)
        target = field.related_model._meta
        alias = f"r{index}"
        parts.append(", ".join(f"{alias}.{_q(f.column)}" for f in target.concrete_fields))
        joins.append(
            f"LEFT JOIN {_q(target.db_table)} {alias} ON {alias}.{_q(target.pk.column)} = m.{_q(field.column)}"
        )
    where = " AND ".join(
        f"m.{_q(meta.pk.column if name == 'pk' else meta.get_field(name).column)} = %s" for name in columns
    )
    return f"SELECT {', '.join(parts)} FROM {_q(meta.db_table)} m {' '.join(joins)} WHERE {where}"


def get_related(
    model: type[M], relations: tuple[str, ...], *, for_update: bool = False, **equal: Any
) -> M | None:
    """`get` with the rows of the foreign keys `relations` loaded in the same statement (each set on
    the instance, None where the key is null). `for_update` locks only the row of `model`."""
    db = _db()
    sql = _related_plan(model, relations, tuple(equal))
    if for_update and db.features.has_select_for_update:
        sql += " FOR UPDATE OF m" if db.features.has_select_for_update_of else " FOR UPDATE"
    cursor = _cursor(db)
    cursor.execute(sql, _prep(model, equal, db))
    row = cursor.fetchone()
    if row is None:
        return None
    width = len(model._meta.concrete_fields)
    instance = _instance(model, row[:width], db)
    for name in relations:
        related_model = model._meta.get_field(name).related_model
        size = len(related_model._meta.concrete_fields)
        part, width = row[width : width + size], width + size
        setattr(instance, name, None if part[0] is None else _instance(related_model, part, db))
    return instance


def find(model: type[M], *, order_by: str | None = None, **equal: Any) -> list[M]:
    """Every row whose fields equal `equal`, in `order_by` order (a field name) when given."""
    db = _db()
    select, _, _ = _read_plan(model)
    sql = f"{select} WHERE {_where(model, tuple(equal))}"
    if order_by is not None:
        sql += f" ORDER BY {_q(model._meta.get_field(order_by).column)}"
    cursor = _cursor(db)
    cursor.execute(sql, _prep(model, equal, db))
    return [_instance(model, row, db) for row in cursor.fetchall()]


def value(model: type[Model], field: str, **equal: Any) -> Any:
    """One field of the one row whose fields equal `equal`, or None when there is no such row."""
    row = values(model, (field,), **equal)
    return None if row is None else row[0]


def values(model: type[Model], fields: tuple[str, ...], **equal: Any) -> tuple[Any, ...] | None:
    """Some fields of the one row whose fields equal `equal`, or None when there is no such row."""
    db = _db()
    select, plan = _values_plan(model, fields)
    cursor = _cursor(db)
    cursor.execute(f"{select} WHERE {_where(model, tuple(equal))}", _prep(model, equal, db))
    row = cursor.fetchone()
    return None if row is None else tuple(_convert(row, plan, db))


def exists(model: type[Model], **equal: Any) -> bool:
    db = _db()
    sql = f"SELECT 1 FROM {_q(model._meta.db_table)} WHERE {_where(model, tuple(equal))} LIMIT 1"
    cursor = _cursor(db)
    cursor.execute(sql, _prep(model, equal, db))
    return cursor.fetchone() is not None


@cache
def _insert_sql(model: type[Model]) -> tuple[str, tuple[str, ...]]:
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(_q(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {_q(meta.db_table)} ({columns}) VALUES ({placeholders})"
    if connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {_q(meta.pk.column)}"
    return sql, tuple(f.attname for f in fields)


def insert(instance: M) -> M:
    """Insert `instance` (a new, unsaved model instance) and set its primary key. Fields with
    `auto_now`/`auto_now_add` get the time now, as `save()` would give them."""
    db = _db()
    model = type(instance)
    sql, names = _insert_sql(model)
    _stamp(instance, creating=True)
    params = _prep(model, {name: getattr(instance, name) for name in names}, db)
    cursor = _cursor(db)
    cursor.execute(sql, params)
    pk = cursor.fetchone()[0] if db.features.can_return_columns_from_insert else cursor.lastrowid
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = db.alias
    return instance


def update(instance: Model, fields: Iterable[str]) -> int:
    """Write `fields` of a stored instance (plus its `auto_now` fields) by primary key, like
    `save(update_fields=...)`. Returns the number of rows written."""
    model = type(instance)
    names = list(fields)
    names += [f.attname for f in _auto_now(model) if f.attname not in names]
    _stamp(instance, creating=False)
    return update_where(model, {"pk": instance.pk}, {name: getattr(instance, name) for name in names})


def update_where(model: type[Model], equal: Mapping[str, Any], values: Mapping[str, Any]) -> int:
    """UPDATE ... SET `values` WHERE the fields equal `equal`; returns the number of rows written."""
    db = _db()
    meta = model._meta
    assignments = ", ".join(f"{_q(meta.get_field(name).column)} = %s" for name in values)
    sql = f"UPDATE {_q(meta.db_table)} SET {assignments} WHERE {_where(model, tuple(equal))}"
    params = _prep(model, values, db) + _prep(model, equal, db)
    cursor = _cursor(db)
    cursor.execute(sql, params)
    return int(cursor.rowcount)


@cache
def _auto_now(model: type[Model]) -> tuple[Any, ...]:
    return tuple(f for f in model._meta.concrete_fields if getattr(f, "auto_now", False))


def _stamp(instance: Model, *, creating: bool) -> None:
    now = timezone.now()
    for field in type(instance)._meta.concrete_fields:
        if getattr(field, "auto_now", False) or (creating and getattr(field, "auto_now_add", False)):
            setattr(instance, field.attname, now)
