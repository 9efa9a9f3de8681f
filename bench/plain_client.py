"""The baseline the fan-out is measured against: the plainest client anyone would write.

aiohttp posting each frame, each request signed by botocore's `SigV4Auth` (which derives
the signing key again for every request), at most 64 in flight over one kept session.
No retries, no deadline: it only has to be a fair yardstick for CPU per frame, driven by
the same `Notifier` (the same DynamoDB paging) as the app's transport.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from chalice_realtime.transports.base import Outcome, region_of


class PlainClient:
    """A `ManagementTransport`: aiohttp + `SigV4Auth.add_auth` per request, `concurrency` in flight."""

    def __init__(self, endpoint_url: str, *, concurrency: int = 64) -> None:
        import botocore.session

        session = botocore.session.get_session()
        self._credentials = session.get_credentials()
        self._region = region_of(endpoint_url) or session.get_config_variable("region") or "us-east-1"
        self._base = endpoint_url.rstrip("/")
        self._concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="plain-client", daemon=True).start()
        self._session: Any = None
        self._semaphore: asyncio.Semaphore | None = None

    def post_to_connections(
        self, connection_ids: Sequence[str], data: bytes, *, deadline: float | None = None
    ) -> list[Outcome]:
        return asyncio.run_coroutine_threadsafe(
            self._post_all(list(connection_ids), data), self._loop
        ).result()

    def delete_connection(self, connection_id: str) -> Outcome:
        raise NotImplementedError("the baseline only posts")

    async def _post_all(self, ids: list[str], data: bytes) -> list[Outcome]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._concurrency))
            self._semaphore = asyncio.Semaphore(self._concurrency)
        return list(await asyncio.gather(*(self._post(cid, data) for cid in ids)))

    async def _post(self, connection_id: str, data: bytes) -> Outcome:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from yarl import URL

        assert self._semaphore is not None
        url = f"{self._base}/@connections/{quote(connection_id, safe='')}"
        async with self._semaphore:
            request = AWSRequest(method="POST", url=url, data=data)
            SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self._region).add_auth(
                request
            )
            async with self._session.post(
                URL(url, encoded=True), data=data, headers=dict(request.headers)
            ) as r:
                await r.read()
                status = r.status
        if status == 410:
            return Outcome.GONE
        return Outcome.DELIVERED if 200 <= status < 300 else Outcome.FAILED
