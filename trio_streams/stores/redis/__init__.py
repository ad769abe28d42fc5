"""The shared store on Redis (or Valkey) Streams: key names, Lua scripts, connection
pools, followers, and the store itself.

Part of the stores layer: it may import only :mod:`trio_streams.core` and the stores.
"""
