"""Unauthenticated nonce requests leave no rows behind once their challenges expire: the periodic
`auth-records-prune` task deletes them (and used challenges, and expired tokens)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.models import AuthChallenge, AuthToken
from channels_app.tasks import auth_records_prune
from connext_site.celery import PERIODIC_TASKS
from tests.support.abuse import log_in, new_account, request_json

pytestmark = pytest.mark.django_db(transaction=True)


def test_expired_and_used_challenges_and_expired_tokens_are_pruned_and_open_ones_kept(node_process):
    flooded, waiting = new_account().address, new_account().address
    for _ in range(20):
        assert request_json(f"{node_process.url}/api/auth/nonce?address={flooded}")[0] == 200
    assert request_json(f"{node_process.url}/api/auth/nonce?address={waiting}")[0] == 200
    user = new_account()
    log_in(node_process.url, user)  # its challenge is used now
    log_in(node_process.url, new_account())  # a token that will have expired
    past = timezone.now() - timedelta(seconds=1)
    AuthChallenge.objects.filter(address=flooded).update(expires_at=past)  # their TTL ran out
    AuthToken.objects.exclude(address=user.address).update(expires_at=past)

    auth_records_prune.apply(throw=True)

    assert list(AuthChallenge.objects.values_list("address", flat=True)) == [waiting]
    assert list(AuthToken.objects.values_list("address", flat=True)) == [user.address]


def test_the_prune_runs_every_minute_in_beat_and_in_process():
    task, interval = PERIODIC_TASKS["auth-records-prune"]

    assert task == "channels_app.tasks.auth_records_prune"
    assert interval == timedelta(seconds=60)
