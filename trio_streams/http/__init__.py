"""The HTTP API on Quart-Trio: the app, one module per route family (``http/routes``),
errors, validation, auth, access log, metrics, OpenAPI, and the chat page's files.

It may import the layers below it: core, stores and producers; never the CLI or server.
"""
