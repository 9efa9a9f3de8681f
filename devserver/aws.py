"""moto's server (DynamoDB, SNS, ...) without a log line per request, with DynamoDB's write atomicity.

python -m devserver.aws -H 127.0.0.1 -p 8002
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from devserver.config import configure_logging


class OneDynamoDBRequestAtATime:
    """WSGI middleware: DynamoDB requests reach moto one at a time.

    DynamoDB applies each write, condition included, atomically. moto's threaded server does
    not: two conditional UpdateItems arriving together can both pass their condition (a job
    message delivered twice at once would then run twice). Serializing DynamoDB requests gives
    the local stack DynamoDB's semantics; other services (SNS delivers to HTTP subscribers from
    inside a publish) stay concurrent. moto holds the GIL while it works, so little is lost.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            with self._lock:
                # moto builds the whole answer inside the call, so the body is complete here.
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    """Serve moto on `-H host -p port` (the options of `moto_server`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8002)
    args = parser.parse_args(argv)
    configure_logging()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds its own URLs (SNS, ...) from it
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        OneDynamoDBRequestAtATime(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
