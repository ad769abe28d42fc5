"""Where sessions live: the store protocol, the in-memory store, and the Redis store
(``stores/redis``) that every instance behind a load balancer shares.

It may import only :mod:`trio_streams.core`.
"""
