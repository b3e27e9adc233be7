"""Follow-ups after commit: run inline, or handed back to a socket request to run after its answer."""

from __future__ import annotations

import pytest
from django.db import transaction

from channels_app import after_commit

pytestmark = pytest.mark.django_db
CALLS: list[str] = []


def record_call(*, label: str) -> None:
    CALLS.append(label)


def test_an_inline_follow_up_runs_right_after_the_commit(django_capture_on_commit_callbacks):
    CALLS.clear()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        after_commit.run_inline("tests.channels_app.test_after_commit.record_call", label="now")
        assert CALLS == []  # never inside the transaction

    assert CALLS == ["now"]


def test_inside_answer_first_the_follow_ups_wait_for_the_caller_in_order(django_capture_on_commit_callbacks):
    CALLS.clear()
    with (
        after_commit.answer_first() as follow_ups,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        after_commit.run_inline("tests.channels_app.test_after_commit.record_call", label="first")
        after_commit.run_inline("tests.channels_app.test_after_commit.record_call", label="second")
    assert CALLS == []  # committed, but held for the caller (which answers its request first)

    for follow_up in follow_ups:
        follow_up()
    assert CALLS == ["first", "second"]


def _refused_update() -> None:
    with transaction.atomic():
        after_commit.run_inline("tests.channels_app.test_after_commit.record_call", label="never")
        raise RuntimeError("refused")


def test_a_rolled_back_transaction_hands_back_no_follow_up(django_capture_on_commit_callbacks):
    CALLS.clear()
    with (
        after_commit.answer_first() as follow_ups,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
    ):
        _refused_update()

    assert follow_ups == []
    assert CALLS == []
