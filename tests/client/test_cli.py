"""The CLI's options for the client's on-chain windows: refused before anything is sent."""

from __future__ import annotations

import secrets

from tests.client.test_cli_disputes import key_file, run

NOWHERE = "http://127.0.0.1:1"  # nothing listens: a command that got this far would fail to connect


def test_a_negative_window_margin_is_refused_before_the_node_is_asked(tmp_path):
    code, _, err = run(
        "--node",
        NOWHERE,
        "--key-file",
        key_file(tmp_path, secrets.token_hex(32)),
        "--window-margin",
        "-5",
        "info",
    )

    assert code == 1
    assert err.startswith("error: invalid_argument:")


def test_windows_longer_than_the_clients_own_payments_are_refused(tmp_path):
    code, _, err = run(
        "--node",
        NOWHERE,
        "--key-file",
        key_file(tmp_path, secrets.token_hex(32)),
        "--window-margin",
        "90000",
        "info",
    )

    assert code == 1
    assert err.startswith("error: invalid_argument:")
    assert "longer than" in err
