"""The card: a sample browser wallet served by the node. Its key lives in the page; the node only
serves static files here and never sees a key, a phrase or a link's secret."""
