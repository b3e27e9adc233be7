"""`connext.chain.deploy`: the address book per chain id, idempotent, redeploying what a reset lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from connext.chain import devchain
from connext.chain.contracts import channel_address
from connext.chain.deploy import DEFINITIONS, DeployError, deploy, load_addresses, main
from tests.contracts.net import Net

EXPECTED = {*DEFINITIONS, "ChannelFactory", "Channel"}


def block_number(net: Net) -> int:
    return int(net.w3.eth.block_number)


def test_deploy_records_every_contract_and_reuses_them(net: Net, tmp_path: Path) -> None:
    book = tmp_path / "addresses.json"
    book.write_text(json.dumps({"1": {"ChannelFactory": "0x0000000000000000000000000000000000000001"}}))
    deployer = Account.from_key(net.deployer.key)
    first = deploy(net.w3, deployer, book)
    assert set(first) == EXPECTED
    for address in first.values():
        assert net.w3.eth.get_code(address) != b""
    height = block_number(net)
    assert deploy(net.w3, deployer, book) == first
    assert block_number(net) == height  # nothing sent
    stored = json.loads(book.read_text())
    assert stored["1"] == {
        "ChannelFactory": "0x0000000000000000000000000000000000000001"
    }  # other chains kept
    assert stored[str(net.chain_id)] == first
    assert load_addresses(book, net.chain_id) == first
    assert load_addresses(tmp_path / "missing.json", net.chain_id) == {}


def test_deploy_after_a_chain_reset_deploys_again(net: Net, tmp_path: Path) -> None:
    book = tmp_path / "addresses.json"
    deployer = Account.from_key(net.deployer.key)
    before_deploy = devchain.snapshot(net.url)
    first = deploy(net.w3, deployer, book)
    devchain.revert(net.url, before_deploy)  # the chain forgets the contracts; the book does not
    assert net.w3.eth.get_code(first["ChannelFactory"]) == b""
    again = deploy(net.w3, deployer, book)
    for address in again.values():
        assert net.w3.eth.get_code(address) != b""


def test_a_replaced_definition_redeploys_the_factory_that_trusts_it(net: Net, tmp_path: Path) -> None:
    book = tmp_path / "addresses.json"
    deployer = Account.from_key(net.deployer.key)
    first = deploy(net.w3, deployer, book)
    net.w3.provider.make_request("anvil_setCode", [first["SignedTransfer"], "0x"])
    again = deploy(net.w3, deployer, book)
    assert again["SignedTransfer"] != first["SignedTransfer"]
    assert again["LinkedTransfer"] == first["LinkedTransfer"]
    assert again["ChannelFactory"] != first["ChannelFactory"]
    factory = net.contract("ChannelFactory", again["ChannelFactory"])
    predicted = factory.functions.getChannelAddress(net.node.address, net.user.address).call()
    assert predicted == channel_address(
        factory=again["ChannelFactory"],
        mastercopy=again["Channel"],
        node=net.node.address,
        user=net.user.address,
        chain_id=net.chain_id,
    )


def test_a_recorded_address_holding_other_code_is_not_reused(net: Net, tmp_path: Path) -> None:
    book = tmp_path / "addresses.json"
    book.write_text(json.dumps({str(net.chain_id): {"LinkedTransfer": net.token.address}}))
    addresses = deploy(net.w3, Account.from_key(net.deployer.key), book)
    assert addresses["LinkedTransfer"] != net.token.address


def test_an_unreadable_address_book_is_an_error(net: Net, tmp_path: Path) -> None:
    book = tmp_path / "addresses.json"
    book.write_text("not json")
    with pytest.raises(DeployError, match="not valid JSON"):
        deploy(net.w3, Account.from_key(net.deployer.key), book)


def test_the_command_line_deploys_and_prints_the_addresses(
    net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "addresses.json"
    assert main(["--rpc", net.url, "--key", net.deployer.key, "--out", str(book), "--test-token"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["chainId"] == net.chain_id
    assert set(printed) == EXPECTED | {"TestToken", "chainId"}
    assert load_addresses(book, net.chain_id)["TestToken"] == printed["TestToken"]
