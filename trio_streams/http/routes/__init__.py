"""The route families: the stream routes, the demo's OpenAI routes, the proxy, the page.

Part of the HTTP layer: it may import core, stores, producers and the HTTP layer.
"""
