"""The REST API: the app's routes and authorizer, served by Chalice's own local server.

    python -m devserver.rest --port 8000

Run by `python -m devserver` with the local stage's environment; on its own it
needs that environment too (see `devserver.config.StackConfig.app_environment`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from chalice.local import create_local_server

from devserver.config import PROJECT_ROOT, configure_logging
from devserver.lambdas import chalice_config, load_app


def main(argv: list[str] | None = None) -> None:
    """Serve the REST API until the process is terminated."""
    parser = argparse.ArgumentParser(prog="python -m devserver.rest")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--app-dir", type=Path, default=PROJECT_ROOT, help="the Chalice app's folder")
    args = parser.parse_args(argv)
    configure_logging()
    app = load_app(args.app_dir)
    server = create_local_server(app, chalice_config(app_dir=args.app_dir), args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
