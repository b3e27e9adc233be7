"""The update engine (issue #21; DESIGN.md, "The node process model"): one owner per shard of
channels, in memory, writing through one fenced session in group-committed batches.

Built in steps. Here now: `shard_writer`, the session that owns shards (a Postgres advisory lock
each) and commits the owner's writes in batches. Not yet: the owner's in-memory channels, the
journal's tables and their projections, forwarding to the owner, commands from tasks.
"""
