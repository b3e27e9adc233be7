"""A client process that stops for good right after it sent one of its signatures to the node, so its
parent can SIGKILL it there: `python tests/support/stopping_client.py NODE_URL KEY STORE RPC PATH
[RECIPIENT AMOUNT]`. It connects with the store file, pays RECIPIENT when given, and on its first request
to PATH (`/api/channel/updates` with a create, or `/api/channel/countersign`) prints `sent <body>` once the
request went out and waits forever, the answer unread."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connext import AsyncClient
from connext.client.node_api import NodeApi


async def main(node_url: str, key: str, store: str, rpc: str, path: str, pay: list[str]) -> None:
    post = NodeApi.post

    async def stopping_post(self: NodeApi, called: str, body: dict[str, Any]) -> Any:
        creates = called != "/api/channel/updates" or body["update"]["type"] == "create"
        if called != path or not creates:
            return await post(self, called, body)
        await post(self, called, body)  # the node has it; this client never reads its answer
        sys.stdout.write("sent " + json.dumps(body) + "\n")
        sys.stdout.flush()
        await asyncio.Event().wait()  # killed here
        return None

    NodeApi.post = stopping_post  # type: ignore[method-assign]
    client = await AsyncClient.connect(node_url, key, store_path=store, chain_rpc_url=rpc)
    if pay:
        await client.transfer(pay[0], int(pay[1]))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6], sys.argv[6:]))
