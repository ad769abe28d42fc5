"""The session core, pure trio and no HTTP: the capped log, the session and its manager,
limits, keep-alive, the producer interface, event-id stamping, SSE framing and parsing.

It imports nothing else of trio_streams: every other layer builds on it.
"""
