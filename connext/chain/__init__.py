"""Chain access: contract artifacts, deployment, reads and the local development chain."""
