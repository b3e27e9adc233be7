"""Services: every write the node makes. Keyword-only, typed, one transaction each."""
