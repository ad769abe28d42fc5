"""The upstream proxy: routing by model, the pooled HTTP client, and the relay that turns
an upstream's SSE answer into a session's bytes.

Part of the producers layer: it may import :mod:`trio_streams.core` and the stores.
"""
