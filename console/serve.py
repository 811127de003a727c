"""Serve the console on 127.0.0.1: a threaded WSGI server that pages can poll while runs go on."""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from console.app import DEFAULT_PORT

HOST = "127.0.0.1"  # the console acts on the stack with your credentials: never listen beyond this machine


def console_server(app: Any, port: int = DEFAULT_PORT) -> BaseWSGIServer:
    """A server bound to 127.0.0.1:port (port 0 picks a free one); `serve_forever()` runs it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the terminal
    return make_server(HOST, port, app, threaded=True)
