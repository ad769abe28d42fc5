"""What writes a session's bytes: the embedded demo model, and the proxy to an
OpenAI-compatible model server (``producers/upstream``).

It may import :mod:`trio_streams.core` and :mod:`trio_streams.stores`, never the HTTP layer.
"""
