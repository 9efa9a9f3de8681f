"""Who may drive the local stack's own endpoints: programs on this machine and the demo page, no other page.

Any web page open in the developer's browser can send requests to 127.0.0.1. The
browser marks them: every POST and every CORS request carries `Origin`, and
current browsers add `Sec-Fetch-Site` to every request. Programs (boto3, requests,
curl, moto delivering SNS messages, the tests) send neither. So:

- a request whose `Origin` is not one of the stack's own pages is refused (403);
- a request without `Origin` that the browser marks `Sec-Fetch-Site: cross-site`
  or `same-site` (an `<img>` or `<script>` of another page) is refused (403);
- a request with neither comes from a program on this machine, which could read
  and write the stack's state anyway: it is served, so tests and the CLI keep working.

A body must be JSON where the endpoint takes JSON: a page may send `text/plain` or
a form to another origin without asking, but `application/json` only after a CORS
preflight, which these servers never approve. Origins are compared with the URLs
the stack was started with, never with the `Host` header, so a DNS name rebound to
127.0.0.1 gains nothing.

    gate = LocalOnly(frozenset({"http://127.0.0.1:8080"}))
    gate.refusal("POST", origin="http://evil.example", fetch_site=None, content_type="application/json")
    # Refusal(status=403, message='...')
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

JSON = ("application/json",)
BROWSER_CROSS_ORIGIN_SITES = ("cross-site", "same-site")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass(frozen=True)
class LocalOnly:
    """The rule for one server: the origins it serves, and the body types its endpoints take (None: any)."""

    allowed_origins: frozenset[str]
    body_types: tuple[str, ...] | None = JSON

    def refusal(
        self,
        method: str,
        *,
        origin: str | None,
        fetch_site: str | None,
        content_type: str | None,
        has_body: bool = True,
    ) -> Refusal | None:
        """Why this request is refused, or None to serve it."""
        if origin:
            if origin not in self.allowed_origins:
                return Refusal(
                    403,
                    f"requests from the page {origin[:100]} are refused: this local-only endpoint serves "
                    "programs on this machine and the stack's own pages",
                )
        elif (fetch_site or "").lower() in BROWSER_CROSS_ORIGIN_SITES:
            return Refusal(403, "requests made by another site's page are refused")
        if self.body_types is not None and has_body and method.upper() in ("POST", "PUT", "PATCH"):
            media_type = (content_type or "").split(";", 1)[0].strip().lower()
            if media_type not in self.body_types:
                return Refusal(415, f"send the body as {' or '.join(self.body_types)}, not {media_type!r}")
        return None


def origin_of(host: str, port: int) -> str:
    """The origin of `http://host:port/` as a browser writes it in `Origin`."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback one (127.0.0.0/8, ::1).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
    (True, False)
    """
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )
