"""Pure logic of the Durable Streams protocol (no I/O): offsets, request headers,
idempotent producers, JSON framing, cursors, expiry and SSE framing.

Every store (``trio_streams/stores/durable/``) and the HTTP routes share it, so a store
only does storage and atomicity.
"""
