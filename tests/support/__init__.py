"""Helpers the tests share: real node processes, waiting on conditions."""
