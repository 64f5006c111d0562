"""A time limit on every request: no answer started within it, and the client gets 503.

The limit runs until the response starts, not to its end, so the event stream (which
starts at once and then lasts) and large bodies are not cut. When it strikes, the 503 is
sent from a task of its own, so a request stuck in a worker thread (a lock, a hung
database) is still answered on time; the stuck request is cancelled and whatever it sends
later is dropped. A request that answers in time costs one timer, nothing more.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("codecdash.api")


class RequestTimeout:
    def __init__(self, app: ASGIApp, seconds: float, retry_after: int = 5) -> None:
        self.app = app
        self.seconds = seconds
        self.retry_after = retry_after
        self._answers: set[asyncio.Task[None]] = set()  # 503s being sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        request = asyncio.current_task()
        started = False
        answer: asyncio.Task[None] | None = None

        async def tracked(message: Message) -> None:
            nonlocal started
            if answer is not None:
                return  # we already answered 503 for this request
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        def expire() -> None:
            nonlocal answer
            if started or request is None:
                return  # answering (a stream, a large body): no limit on the rest
            answer = loop.create_task(self._unavailable(scope, send))
            self._answers.add(answer)
            answer.add_done_callback(self._answers.discard)
            request.cancel()

        timer = loop.call_later(self.seconds, expire)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if answer is None or request is None:
                raise  # not ours: the server gave up on the request
            request.uncancel()
        finally:
            timer.cancel()
        if answer is not None:
            await answer

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        log.warning(
            "request timed out after %g s: %s %s", self.seconds, scope["method"], scope["path"]
        )
        body = orjson.dumps(
            {
                "error": {
                    "code": "timeout",
                    "message": f"no answer within {self.seconds:g} s; retry shortly",
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
