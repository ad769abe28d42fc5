"""OpenAI Responses background mode over ordinary sessions.

A background response is a session whose id is the response id. Its producer (the demo
model's or an upstream relay) is wrapped so that the log holds the events a client of
OpenAI's API expects: numbered with ``sequence_number``, carrying the response id the
client was given, and ending with a terminal event. Everything else (``GET
/v1/responses/{id}``, resuming after a sequence number, the status after a cancel) is read
back from that log, so it works the same on every store and on every instance.

Part of the producers layer: it may import :mod:`trio_streams.core` and the stores.
"""
