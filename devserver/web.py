"""The demo page's server: `web/` at `/`, the browser library at `/client/`, the Firebase JS SDK's
ES modules at `/node_modules/`, and two local-only routes.

    python -m devserver.web --port 8080 --config '{"restUrl": ...}'

The page loads the SDK without a bundler: its import map (`web/index.html`) points `firebase/app`,
`firebase/auth` and the packages they import at their ES module files, which this server reads from
the project's `node_modules` (installed by `make install`). Only JavaScript files of those
packages are served; any other path under `/node_modules/` is a 404.

- `GET /config.json`: where the page finds the REST API, the WebSocket and the Auth Emulator.
- `POST /dev/test-payment` `{"user_id", "amount", "currency", "type"}`: sends a signed
  Stripe test event to the REST API (`devserver.stripe_event`) and answers with the app's reply.
  It takes an `application/json` body from the demo page or a program, never from another
  page (`devserver.local_only`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devserver.config import PROJECT_ROOT, configure_logging
from devserver.local_only import LocalOnly, origin_of
from devserver.stripe_event import EVENT_TYPES, send_test_event

logger = logging.getLogger("devserver.web")

WEB_ROOT = PROJECT_ROOT / "web"
CLIENT_ROOT = PROJECT_ROOT / "client"
NODE_MODULES = PROJECT_ROOT / "node_modules"
NODE_MODULES_URL = "/node_modules/"

# The npm packages whose ES modules the page imports: `firebase/app` and `firebase/auth`, and what
# their modules import in turn (tests/devserver/test_demo_server.py follows the imports to check it).
BROWSER_PACKAGES = frozenset(
    {
        "firebase",
        "@firebase/app",
        "@firebase/auth",
        "@firebase/component",
        "@firebase/logger",
        "@firebase/util",
        "idb",
    }
)
BROWSER_MODULE_SUFFIXES = frozenset({".js", ".mjs"})


class DemoPageHandler(SimpleHTTPRequestHandler):
    """Static files plus the two local routes; `config` is set on the subclass made by `serve`."""

    config: dict[str, str]
    stripe_secret: str
    local_only: LocalOnly

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(WEB_ROOT), **kwargs)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/config.json":
            self._json(HTTPStatus.OK, self.config)
            return
        super().do_GET()

    def send_head(self) -> Any:
        # GET and HEAD: under /node_modules/ only the page's browser modules exist.
        path = _clean(self.path)
        if path.startswith(NODE_MODULES_URL) and browser_module(path) is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not a browser module of the demo page")
            return None
        return super().send_head()

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/dev/test-payment":
            self._json(HTTPStatus.NOT_FOUND, {"message": "not found"})
            return
        refusal = self.local_only.refusal(
            "POST",
            origin=self.headers.get("Origin"),
            fetch_site=self.headers.get("Sec-Fetch-Site"),
            content_type=self.headers.get("Content-Type"),
        )
        if refusal is not None:
            logger.warning("refused POST %s: %s", self.path, refusal.message)
            self.close_connection = True  # the body is left unread
            self._json(HTTPStatus(refusal.status), {"message": refusal.message})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            user_id = request["user_id"]
            amount = int(request.get("amount", 2000))
            currency = str(request.get("currency", "usd"))
            kind = str(request.get("type", EVENT_TYPES[0]))
            if not isinstance(user_id, str) or not user_id or kind not in EVENT_TYPES or amount <= 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._json(
                HTTPStatus.BAD_REQUEST,
                {"message": f"send {{user_id, amount > 0, currency, type}} with type in {list(EVENT_TYPES)}"},
            )
            return
        delivery = send_test_event(
            self.config["restUrl"], user_id, amount, currency, kind, self.stripe_secret
        )
        self._json(
            HTTPStatus.OK if 200 <= delivery.status < 300 else HTTPStatus.BAD_GATEWAY,
            {
                "event_id": delivery.event["id"],
                "type": kind,
                "status": delivery.status,
                "response": delivery.body,
            },
        )

    def translate_path(self, path: str) -> str:
        # `/client/...` comes from the browser library's folder, everything else from `web/`.
        clean = _clean(path)
        if clean == "/client" or clean.startswith("/client/"):
            relative = clean.removeprefix("/client").lstrip("/")
            return str(_inside(CLIENT_ROOT, relative))
        if clean.startswith(NODE_MODULES_URL):
            return str(browser_module(clean))  # send_head refused what is not one
        return super().translate_path(path)

    def end_headers(self) -> None:
        # The page and the library change while you work on them: never serve a stale copy.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _json(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info(format, *args)


def _clean(path: str) -> str:
    """The URL's path, unquoted and normalised (no `..`, no query, no fragment)."""
    return posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0]))


def browser_module(url_path: str) -> Path | None:
    """The file that `/node_modules/<package>/<file>.js` names, if it is one of BROWSER_PACKAGES'.

    browser_module("/node_modules/firebase/app/dist/esm/index.esm.js")  # -> node_modules/firebase/...
    """
    relative = _clean(url_path).removeprefix(NODE_MODULES_URL)
    parts = relative.split("/")
    package = "/".join(parts[:2]) if relative.startswith("@") else parts[0]
    if package not in BROWSER_PACKAGES or posixpath.splitext(relative)[1] not in BROWSER_MODULE_SUFFIXES:
        return None
    package_root = (NODE_MODULES / package).resolve()
    target = (NODE_MODULES / relative).resolve()
    return target if package_root in target.parents and target.is_file() else None


def _inside(root: Path, relative: str) -> Path:
    """`root / relative`, never outside `root` (normpath already removed `..`)."""
    target = (root / relative).resolve()
    return target if target == root.resolve() or root.resolve() in target.parents else root


# ES modules must be served as JavaScript or browsers refuse them.
DemoPageHandler.extensions_map = {
    **SimpleHTTPRequestHandler.extensions_map,
    ".js": "text/javascript",
    ".mjs": "text/javascript",
}


def serve(config: dict[str, str], stripe_secret: str, host: str, port: int) -> ThreadingHTTPServer:
    """The demo page server (not yet serving); its local route answers its own pages and programs only."""
    local_only = LocalOnly(frozenset({origin_of(host, port)}))
    handler = type(
        "LocalDemoPageHandler",
        (DemoPageHandler,),
        {"config": config, "stripe_secret": stripe_secret, "local_only": local_only},
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve the demo page until the process is terminated."""
    from devserver.config import LOCAL_STRIPE_SECRET, StackConfig

    parser = argparse.ArgumentParser(prog="python -m devserver.web")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--config", default="", help="the JSON of GET /config.json (default: the default stack)"
    )
    args = parser.parse_args(argv)
    # From the environment, as the app reads it, rather than an option that `ps` would show.
    stripe_secret = os.environ.get("STRIPE_WEBHOOK_SECRET") or LOCAL_STRIPE_SECRET
    configure_logging()
    config = json.loads(args.config) if args.config else StackConfig().web_config()
    serve(config, stripe_secret, args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
