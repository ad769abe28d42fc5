"""The server's default address: where ``serve`` listens and where the client looks first.

One definition for both, so ``trio-streams serve`` and ``trio-streams tail`` (or
``StreamsClient()``) without options find each other. It sits in core, beneath the server
and the client, and imports nothing: the command line names the default URL in its
``--help`` without importing the HTTP client (httpx, a tenth of a second).
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: The URL a client uses when given none: the server's default address.
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
