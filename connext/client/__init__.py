"""The client SDK: `Client` (blocking) and `AsyncClient` (asyncio) for one user's channel with a node.

```python
from connext import Client, ETH
client = Client.connect("http://localhost:8000", private_key, store_path="wallet.db")
client.deposit(10**17)                       # sends the transaction, returns once credited
client.get_free_balance(ETH)                 # {"user": ..., "node": ...}
client.withdraw(5 * 10**16, recipient=addr)  # the node pays the gas; returns the transaction hash
pid = client.transfer(bob, 10**15)            # routed through the node; Bob's client unlocks it
link = client.create_link(10**15)            # {"payment_id", "secret", "url"}: whoever holds it redeems
client.get_transfer(pid); client.get_transfer_history()
client.close()
```
"""

from connext.client.amounts import format_amount, parse_amount
from connext.client.async_client import ETH, AsyncClient
from connext.client.events import EVENTS
from connext.client.sync_client import Client

__all__ = ["ETH", "EVENTS", "AsyncClient", "Client", "format_amount", "parse_amount"]
