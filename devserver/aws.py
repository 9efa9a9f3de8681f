"""moto's server (DynamoDB, SNS, ...) without a log line per request.

python -m devserver.aws -H 127.0.0.1 -p 8002
"""

from __future__ import annotations

import sys

from moto.server import main as moto_main

from devserver.config import configure_logging


def main(argv: list[str] | None = None) -> None:
    """Run moto's server with the same options as `moto_server`."""
    configure_logging()
    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
