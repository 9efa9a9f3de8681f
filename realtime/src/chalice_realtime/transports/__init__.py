"""How frames reach API Gateway's Management API (`@connections`), one module per backend.

- `curl`: libcurl's multi interface through pycurl, the least CPU per frame (`pip install
  "chalice-realtime[fast]"`);
- `aiohttp`: asyncio + aiohttp, no native library (`pip install "chalice-realtime[aiohttp]"`);
- `boto3`: a boto3 client on a thread pool, nothing to install beyond boto3.

`REALTIME_TRANSPORT` names one (default `curl`); `transport_for` builds it, importing only
that backend, and falls back to `boto3` with a warning when the named one's extra is missing.
Every transport it builds paces its posts with the process's one `RateController` (`rate.py`),
under the ceiling `REALTIME_MAX_POSTS_PER_SECOND`.
"""

from __future__ import annotations

import importlib.util
import logging

from .base import ManagementTransport, Outcome, RetryPolicy, SubmittingTransport
from .rate import DEFAULT_CEILING, RateController, process_rate

logger = logging.getLogger(__name__)

TRANSPORTS = ("curl", "aiohttp", "boto3")
# The import each backend needs, and the extra that installs it.
_NEEDS = {"curl": ("pycurl", "fast"), "aiohttp": ("aiohttp", "aiohttp")}
FALLBACK = "boto3"


def available(kind: str) -> bool:
    """Whether `kind`'s library is installed (looked up, not imported: no cold-start cost)."""
    module, _extra = _NEEDS.get(kind, ("boto3", ""))
    return importlib.util.find_spec(module) is not None


def resolve(kind: str) -> str:
    """The transport that will run for the requested `kind`: `kind` itself, or `boto3` when its extra
    is not installed (logged as a warning that names the extra and the cost)."""
    if kind not in TRANSPORTS:
        raise ValueError(f"unknown transport {kind!r}: expected {', '.join(TRANSPORTS)}")
    if available(kind):
        return kind
    module, extra = _NEEDS[kind]
    logger.warning(
        'REALTIME_TRANSPORT=%s needs %s, which is not installed (pip install "chalice-realtime[%s]"); '
        "posting frames with the %s transport instead, which costs several times the CPU per frame "
        "(docs: performance)",
        kind,
        module,
        extra,
        FALLBACK,
        extra={"requested_transport": kind, "transport": FALLBACK},
    )
    return FALLBACK


def transport_for(
    kind: str, endpoint_url: str, *, max_posts_per_second: float = DEFAULT_CEILING
) -> ManagementTransport:
    """The transport `REALTIME_TRANSPORT` names (`curl`, `aiohttp` or `boto3`) for `endpoint_url`,
    logged once; the `boto3` fallback when the named one's extra is missing. It shares the process's
    rate controller, whose ceiling is `max_posts_per_second`.

    transport = transport_for("curl", "https://abc.execute-api.eu-west-1.amazonaws.com/dev")
    """
    chosen = resolve(kind)
    logger.info("realtime transport: %s", chosen, extra={"transport": chosen})
    rate = process_rate(max_posts_per_second)
    if chosen == "curl":
        from .curl import CurlTransport

        return CurlTransport(endpoint_url, rate=rate)
    if chosen == "aiohttp":
        from .aiohttp import AiohttpTransport

        return AiohttpTransport(endpoint_url, rate=rate)
    from .boto3 import Boto3ThreadPoolTransport

    return Boto3ThreadPoolTransport(endpoint_url, rate=rate)


__all__ = [
    "TRANSPORTS",
    "ManagementTransport",
    "Outcome",
    "RateController",
    "RetryPolicy",
    "SubmittingTransport",
    "available",
    "process_rate",
    "resolve",
    "transport_for",
]
