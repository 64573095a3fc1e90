"""Faults injected into real stores: everything passes through to the real object except one
method, which fails the way an outage or a refused credential does."""

from __future__ import annotations

from typing import Any


class FailingMethod:
    """``store`` with ``method`` raising ``error`` (the first ``times`` calls, or every call
    when ``times`` is None); every other attribute is the real store's."""

    def __init__(self, store: Any, method: str, error: Exception, times: int | None = None) -> None:
        self._store, self._method, self._error, self._times = store, method, error, times

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self._times is None or self._times > 0:
                if self._times is not None:
                    self._times -= 1
                raise self._error
            return real(*args, **kwargs)

        return failing
