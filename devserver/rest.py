"""The REST API: the app's routes and authorizer, served by Chalice's own local server.

    python -m devserver.rest --port 8000

Run by `python -m devserver` with the local stage's environment; on its own it
needs that environment too (see `devserver.config.StackConfig.app_environment`).
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalice import Chalice
from chalice.app import ChaliceAuthorizer
from chalice.local import create_local_server

from devserver.config import PROJECT_ROOT, configure_logging
from devserver.lambdas import chalice_config, load_app

logger = logging.getLogger("devserver.rest")


def authorizer_errors_as_api_gateway(app: Chalice) -> None:
    """Make an authorizer that raises answer as on AWS: 500 `{"message": null}`, nothing cached.

    API Gateway turns a failed authorizer invocation into that 500; Chalice's local server would drop
    the connection instead. It answers the same 500 for an authorizer returning nothing, so a raising
    one is made to return nothing (once per authorizer, in this process only).
    """
    for methods in app.routes.values():
        for entry in methods.values():
            authorizer = entry.authorizer
            if isinstance(authorizer, ChaliceAuthorizer) and not getattr(
                authorizer.func, "_answers_500", False
            ):
                authorizer.func = _none_when_raising(authorizer.func)


def _none_when_raising(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(func)
    def authorize(auth_request: Any) -> Any:
        try:
            return func(auth_request)
        except Exception:
            logger.exception("the authorizer failed: 500, as API Gateway answers")
            return None

    authorize._answers_500 = True  # type: ignore[attr-defined]
    return authorize


def main(argv: list[str] | None = None) -> None:
    """Serve the REST API until the process is terminated."""
    parser = argparse.ArgumentParser(prog="python -m devserver.rest")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--app-dir", type=Path, default=PROJECT_ROOT, help="the Chalice app's folder")
    args = parser.parse_args(argv)
    configure_logging()
    app = load_app(args.app_dir)
    authorizer_errors_as_api_gateway(app)
    server = create_local_server(app, chalice_config(app_dir=args.app_dir), args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
