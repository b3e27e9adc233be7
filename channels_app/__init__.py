"""The node: channel models, services (all writes), selectors (reads), REST API, websocket relay, tasks."""
