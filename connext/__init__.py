"""connext-py: state-channel payments. `connext.protocol` is the pure core shared by node and clients;
`connext.chain` talks to the contracts; `connext.client` is the SDK."""
