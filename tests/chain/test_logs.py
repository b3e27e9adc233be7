"""Reading logs newest first in bounded block windows, on anvil: what a provider's range limit allows."""

from __future__ import annotations

from eth_account import Account
from web3 import HTTPProvider, Web3

from connext.chain import devchain, logs
from connext.chain.contracts import contract_at


def _mint(w3: Web3, token, to: str, amount: int) -> int:
    account = Account.from_key(devchain.DEV_PRIVATE_KEYS[0])
    tx_hash = token.functions.mint(to, amount).transact({"from": account.address})
    return int(w3.eth.wait_for_transaction_receipt(tx_hash)["blockNumber"])


class _Counted:
    """The real event, counting the `get_logs` requests made through it."""

    def __init__(self, event) -> None:
        self.event, self.requests, self.ranges = event, 0, []

    def __call__(self):
        outer = self

        class Reader:
            def get_logs(self, **kwargs):
                outer.requests += 1
                outer.ranges.append((kwargs["from_block"], kwargs["to_block"]))
                return outer.event().get_logs(**kwargs)

        return Reader()


WINDOW = 100


def test_the_newest_logs_are_found_in_windows_from_the_head_and_the_scan_stops_there(chain, deployments):
    # Five windows of history between the two mints (windows of 100 blocks: the rule is the same at
    # the node's 1,000, and anvil mines 500 blocks in a fraction of the time of 5,000).
    w3 = Web3(HTTPProvider(chain, request_kwargs={"timeout": 180}))
    token = contract_at(w3, "TestToken", deployments["TestToken"])
    holder = Account.create().address
    old_block = _mint(w3, token, holder, 1)
    w3.provider.make_request("anvil_mine", [hex(5 * WINDOW)])
    new_block = _mint(w3, token, holder, 2)
    w3.provider.make_request("anvil_mine", [hex(10)])
    head = int(w3.eth.block_number)

    newest = _Counted(token.events.Transfer)
    found = logs.scan_back(newest, to_block=head, enough=bool, window=WINDOW, argument_filters={"to": holder})
    assert [int(log["args"]["value"]) for log in found] == [2]
    assert found[0]["blockNumber"] == new_block
    assert newest.requests == 1
    assert newest.ranges == [(head - WINDOW + 1, head)]

    everything = _Counted(token.events.Transfer)
    found = logs.scan_back(
        everything,
        to_block=head,
        from_block=old_block - 3,
        enough=lambda _: False,
        window=WINDOW,
        argument_filters={"to": holder},
    )
    assert [(int(log["args"]["value"]), log["blockNumber"]) for log in found] == [
        (1, old_block),
        (2, new_block),
    ]
    assert all(high - low < WINDOW for low, high in everything.ranges)
    assert everything.ranges[-1][0] == old_block - 3  # never below the lower bound
    assert everything.requests == -(-(head - old_block + 4) // WINDOW)
