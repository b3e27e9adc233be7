"""The hot path reads a user's update and countersignature without building DRF serializers
(`update_input`, `countersign_input`). It must take exactly what the serializers take, to the same
data, and leave every refusal to them, so the error bodies stay the serializers' own."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from channels_app.api import channel_views
from channels_app.api.channel_views import CountersignInput, UpdateInput, countersign_input, update_input

SIGNATURE = "0x" + "ab" * 65
NONCE = "7"

# Values near the written forms and far from them: each field sees its own form, others' forms, and
# what a careless client sends (numbers, null, padded or upper-case hex, the wrong length).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=6),
)
near_signatures = st.sampled_from(
    [SIGNATURE, "0x" + "AB" * 65, "0x" + "ab" * 64, "0x" + "ab" * 66, "ab" * 65, " " + SIGNATURE, "0x", ""]
)
near_nonces = st.sampled_from(
    ["0", NONCE, str(2**256 - 1), str(2**256), "07", "-1", " 7", "1e3", "\u0663", ""]
)
json_values = st.recursive(
    json_scalars | near_signatures | near_nonces,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
answers = st.one_of(
    st.fixed_dictionaries({"nonce": near_nonces, "signature": near_signatures}),
    st.fixed_dictionaries({}, optional={"nonce": near_nonces | json_scalars, "signature": near_signatures}),
    json_values,
)
update_bodies = st.fixed_dictionaries(
    {},
    optional={
        "update": json_values,
        "signature": near_signatures | json_scalars,
        "meta": st.dictionaries(st.text(max_size=4), json_values, max_size=3) | json_scalars,
        "answer": answers,
        "extra": json_values,
    },
)


def _serialized(serializer_class, body):
    serializer = serializer_class(data=body)
    if not serializer.is_valid():
        return None
    return _plain(serializer.validated_data)


def _plain(value):
    return {key: _plain(item) for key, item in value.items()} if isinstance(value, dict) else value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(body=update_bodies | json_values)
def test_the_fast_read_of_an_update_takes_exactly_what_the_serializer_takes_to_the_same_data(body):
    assert channel_views._update_input_fast(body) == _serialized(UpdateInput, body)


@settings(max_examples=300)
@given(body=answers)
def test_the_fast_read_of_a_countersignature_takes_exactly_what_the_serializer_takes(body):
    assert channel_views._answer_fast(body) == _serialized(CountersignInput, body)


def test_a_clients_plain_update_is_read_without_the_serializer(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the serializer was built for a plain body")

    monkeypatch.setattr(channel_views, "UpdateInput", refuse)
    monkeypatch.setattr(channel_views, "CountersignInput", refuse)
    body = {
        "update": {"type": "transfer"},
        "signature": SIGNATURE,
        "meta": {"note": "rent"},
        "answer": {"nonce": NONCE, "signature": SIGNATURE},
    }
    assert update_input(body) == {
        "update": {"type": "transfer"},
        "signature": bytes.fromhex("ab" * 65),
        "meta": {"note": "rent"},
        "answer": {"nonce": 7, "signature": bytes.fromhex("ab" * 65)},
    }
    assert countersign_input({"nonce": NONCE, "signature": SIGNATURE}) == {
        "nonce": 7,
        "signature": bytes.fromhex("ab" * 65),
    }


@pytest.mark.parametrize(
    "body",
    [
        {"update": {"type": "transfer"}, "signature": SIGNATURE[:-2]},
        {"update": None, "signature": SIGNATURE},
        {"update": {}, "signature": SIGNATURE, "answer": {"nonce": 7, "signature": SIGNATURE}},
        {"update": {}, "signature": SIGNATURE, "meta": "note"},
    ],
)
def test_a_malformed_update_gets_the_serializers_own_refusal(body):
    with pytest.raises(ValidationError) as raised:
        update_input(body)
    expected = UpdateInput(data=body)
    assert not expected.is_valid()
    assert raised.value.detail == expected.errors
