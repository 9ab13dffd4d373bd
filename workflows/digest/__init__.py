"""Digests (seeds 001 and 004): the weekly progress digest, the monthly summary and the manager
digest, each at its local time in every recipient's own zone, from one Schedule and a dispatcher."""
