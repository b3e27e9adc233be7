"""Follow-ups after commit: run inline, or handed back to a socket request to run after its answer."""

from __future__ import annotations

import pytest
from celery import shared_task
from django.db import transaction

from channels_app import after_commit

pytestmark = pytest.mark.django_db
CALLS: list[str] = []


def record_call(*, label: str) -> None:
    CALLS.append(label)


def test_an_inline_follow_up_runs_right_after_the_commit(django_capture_on_commit_callbacks):
    CALLS.clear()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        after_commit.run_inline(record_call, label="now")
        assert CALLS == []  # never inside the transaction

    assert CALLS == ["now"]


def test_inside_answer_first_the_follow_ups_wait_for_the_caller_in_order(django_capture_on_commit_callbacks):
    CALLS.clear()
    with (
        after_commit.answer_first() as follow_ups,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        after_commit.run_inline(record_call, label="first")
        after_commit.run_inline(record_call, label="second")
    assert CALLS == []  # committed, but held for the caller (which answers its request first)

    for follow_up in follow_ups:
        follow_up()
    assert CALLS == ["first", "second"]


def _refused_update() -> None:
    with transaction.atomic():
        after_commit.run_inline(record_call, label="never")
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


FAIL_ONCE: list[str] = []


@shared_task(ignore_result=True)
def retry_fail_once(label: str) -> None:
    """The retry task of `fail_once`: the same follow-up, run by a worker."""
    fail_once(label=label)


def fail_once(*, label: str) -> None:
    if label not in FAIL_ONCE:
        FAIL_ONCE.append(label)
        raise ConnectionError("the database went away")
    CALLS.append(label)


def test_a_failed_inline_follow_up_is_handed_to_a_worker_with_its_arguments(
    django_capture_on_commit_callbacks,
):
    """Not left to the periodic sweep (tens of seconds): a worker tries it again a second later."""
    import base64
    import json

    import redis
    from django.conf import settings

    CALLS.clear()
    FAIL_ONCE.clear()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        after_commit.run_inline(
            fail_once,
            retry_task="tests.channels_app.test_after_commit.retry_fail_once",
            label="later",
        )

    queued = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    assert CALLS == []
    assert [(m["headers"]["task"], m["headers"]["kwargsrepr"]) for m in queued] == [
        ("tests.channels_app.test_after_commit.retry_fail_once", "{'label': 'later'}")
    ]
    assert queued[0]["headers"]["eta"] is not None  # a second later, not at once

    _, kwargs, _ = json.loads(base64.b64decode(queued[0]["body"]))
    retry_fail_once.apply(kwargs=kwargs).get()  # what the worker runs: the follow-up, now succeeding
    assert CALLS == ["later"]


def test_the_payment_follow_up_task_takes_every_argument_of_the_inline_follow_up():
    import inspect

    from channels_app import tasks
    from channels_app.services import payments

    inline = inspect.signature(payments.payments_follow_up).parameters
    assert set(inspect.signature(tasks.payments_follow_up).parameters) == set(inline)
