"""The update engine (issue #21; DESIGN.md, "The node process model"): one owner per shard of
channels, in memory, writing through one fenced session in group-committed batches.

Built in steps. Here now: `shard_writer`, the session that owns shards (a Postgres advisory lock
each) and commits the owner's writes in batches; `owner`, the channels of those shards in memory, a
user's update, a countersignature and a node proposal decided there and journaled (`journal`: the
update log and its projections, the channel and transfer rows, compare-and-set while other writers
remain); `router`, a payment's common steps on the owner, its records in the same batches, the rest
left to `services.payments`; `process`, the engine of a node process serving the socket's update
requests (UPDATE_ENGINE, off by default). Not yet: requests forwarded to their shard's owner, tasks
sending commands to it, a fair split of the shards.
"""
