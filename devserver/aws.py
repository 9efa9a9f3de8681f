"""moto's server (DynamoDB, SNS, ...) without a log line per request, with DynamoDB's write atomicity.

python -m devserver.aws -H 127.0.0.1 -p 8002

No web page can use it: moto's permissive CORS is off (`MOTO_DISABLE_GLOBAL_CORS`), and
a request a browser sends for another page is refused (`devserver.local_only`), so a
page can neither read `/moto-api/data.json` nor publish, write or reset with a form.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from devserver.config import configure_logging
from devserver.local_only import LocalOnly, origin_of

logger = logging.getLogger("devserver.aws")


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


class RefuseOtherPages:
    """WSGI middleware: requests a browser sends for a page other than `gate`'s are answered 403.

    boto3 and moto's own SNS deliveries send no `Origin`, so the app and the tests are unaffected.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], gate: LocalOnly) -> None:
        self._app = app
        self._gate = gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refusal = self._gate.refusal(
            str(environ.get("REQUEST_METHOD", "GET")),
            origin=environ.get("HTTP_ORIGIN"),
            fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
            content_type=environ.get("CONTENT_TYPE"),
        )
        if refusal is None:
            return self._app(environ, start_response)
        logger.warning(
            "refused %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), refusal.message
        )
        body = json.dumps({"message": refusal.message}).encode()
        start_response(
            f"{refusal.status} {HTTPStatus(refusal.status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def main(argv: list[str] | None = None) -> None:
    """Serve moto on `-H host -p port` (the options of `moto_server`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8002)
    args = parser.parse_args(argv)
    configure_logging()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds its own URLs (SNS, ...) from it
    # Read by moto when first imported (moto.settings), so set before the import below. Any value disables.
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    # Its own dashboard (`/moto-api/`) is the only page it serves; AWS's wire formats are not the JSON rule's.
    gate = LocalOnly(frozenset({origin_of(args.host, args.port)}), body_types=None)
    run_simple(
        args.host,
        args.port,
        RefuseOtherPages(OneDynamoDBRequestAtATime(app), gate),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
