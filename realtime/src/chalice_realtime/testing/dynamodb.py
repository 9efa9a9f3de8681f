"""A real DynamoDB client (moto's, DynamoDB Local's) that records what the code under test asks of it.

Standard library only: it wraps whatever client it is given.
"""

from __future__ import annotations

from typing import Any


class CountingDynamoDB:
    """Wraps a client and records each operation called, in order, with the index it named.

    counting = CountingDynamoDB(moto_client)
    ConnectionStore(table, counting).connection_ids_of("alice")
    counting.calls                # ['query']
    counting.calls_on("by_user")  # ['query']

    `page_size` caps every Query's `Limit`, so code that must read several pages is seen doing it.
    """

    def __init__(self, inner: Any, *, page_size: int | None = None) -> None:
        self.inner = inner
        self.page_size = page_size
        self.calls: list[str] = []
        self.indexes: list[str | None] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            self.indexes.append(kwargs.get("IndexName"))
            if name == "query" and self.page_size is not None:
                kwargs["Limit"] = min(kwargs.get("Limit", self.page_size), self.page_size)
            return method(**kwargs)

        return call

    def calls_on(self, index: str) -> list[str]:
        """The operations that named `index`."""
        return [call for call, named in zip(self.calls, self.indexes, strict=True) if named == index]

    def clear(self) -> None:
        self.calls.clear()
        self.indexes.clear()
