"""The operator dashboard: staff-only pages and their JSON API over the node's records."""
