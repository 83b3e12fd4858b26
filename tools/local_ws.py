"""A local stand-in for API Gateway's WebSocket API, driving the app's own Chalice handlers.

It plays both halves of API Gateway on 127.0.0.1:
- the WebSocket endpoint (`ws://127.0.0.1:8001`): each client's connect, text frames and close become
  the same `$connect` / `$default` / `$disconnect` events API Gateway sends, handed to the handlers
  registered with `@app.on_ws_connect()` etc., exactly as Lambda would call them;
- the management API (`http://127.0.0.1:<port>/local/@connections/{id}`): PostToConnection,
  GetConnection and DeleteConnection, answering 410 GoneException for unknown connections.
  `start()` points WEBSOCKET_ENDPOINT_URL at it, so `chalicelib.websocket` sends through Chalice's
  WebsocketAPI and boto3 just as in a deployed stage, only to this address.

Usage:

    from app import app
    from tools.local_ws import LocalWebSocketServer

    server = LocalWebSocketServer(app)          # port=0 picks a free port
    url = server.start()                        # "ws://127.0.0.1:8001"; notifications now reach it
    ...                                         # run ingestions in this process
    server.stop()

and, in another terminal:

    .venv/bin/python -m websockets ws://127.0.0.1:8001
    > {"action": "subscribe", "ingestion_id": "*"}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from chalice.local import LambdaContext

log = logging.getLogger("sluice.local_ws")

API_ID = "local"
STAGE = "local"
# Below the management client's read timeout, so a stuck client is answered 410 rather than timing out.
SEND_TIMEOUT_SECONDS = 1.5


class ListenError(RuntimeError):
    """The WebSocket endpoint could not listen on its address; `cause` says why (often: port taken)."""

    def __init__(self, host: str, port: int, cause: BaseException | None) -> None:
        super().__init__(f"The local WebSocket server could not listen on {host}:{port}: {cause or 'no answer'}.")
        self.host, self.port, self.cause = host, port, cause


class LocalWebSocketServer:
    """The WebSocket endpoint and its management API, each in a background thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8001) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._handlers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="local-ws-handler")
        self._pending: dict[Any, str] = {}
        self._sockets: dict[str, Any] = {}
        self._connected_at: dict[str, float] = {}
        self._saved_env: dict[str, str | None] = {}
        self._listen_error: BaseException | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        """Serve, point this process's notifications here, and return the ws:// URL."""
        self._http = ThreadingHTTPServer((self.host, 0), _management_handler(self))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="local-ws-management", daemon=True).start()
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(self._loop, ready), name="local-ws", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            self.stop()
            raise ListenError(self.host, self.port, self._listen_error)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://{self.host}:{self.port}"
        management = f"http://{self.host}:{self._http.server_address[1]}/{STAGE}"
        self._set_env({"WEBSOCKET_ENDPOINT_URL": management})
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            # Chalice's handler wrapper configures app.websocket_api, which wants a region.
            self._set_env({"AWS_DEFAULT_REGION": "us-east-1"})
        return self.url

    def stop(self) -> None:
        """Close every client (each gets its $disconnect), stop serving, restore the environment."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
            try:
                future.result(15)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(15)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self._handlers.shutdown(wait=True)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._listen())
        except Exception as exc:  # noqa: BLE001 - reported by start() as a ListenError
            log.debug("could not listen on %s:%s", self.host, self.port, exc_info=True)
            self._listen_error = exc
            loop.close()
            return
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> Any:
        import websockets.asyncio.server as ws_server

        return await ws_server.serve(self._session, self.host, self.port, process_request=self._connect)

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    # --- the WebSocket side: API Gateway's events, Lambda's calls ------------------------------

    async def _connect(self, connection: Any, request: Any) -> Any:
        """$connect: a rejection by the handler becomes the HTTP answer to the handshake."""
        connection_id = secrets.token_urlsafe(12)
        result = await self._invoke("$connect", connection_id, request=request)
        status = int((result or {}).get("statusCode", 200))
        if status >= 300:
            return connection.respond(status, _body_text(result))
        self._pending[connection] = connection_id
        return None

    async def _session(self, connection: Any) -> None:
        connection_id = self._pending.pop(connection)
        self._sockets[connection_id] = connection
        self._connected_at[connection_id] = time.time()
        try:
            async for frame in connection:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                await self._invoke("$default", connection_id, body=text)
        except Exception:  # noqa: BLE001 - a broken client must not take the server down
            log.debug("connection %s ended abruptly", connection_id, exc_info=True)
        finally:
            self._sockets.pop(connection_id, None)
            self._connected_at.pop(connection_id, None)
            await self._invoke("$disconnect", connection_id)

    async def _invoke(self, route_key: str, connection_id: str, **kwargs: Any) -> Any:
        """Call the handler registered for `route_key` in a worker thread, as Lambda would."""
        event = _event(route_key, connection_id, f"{self.host}:{self.port}", **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._handlers, self._call_handler, route_key, event)

    def _call_handler(self, route_key: str, event: dict[str, Any]) -> Any:
        config = self.app.websocket_handlers.get(route_key)
        if config is None:
            return {"statusCode": 200}
        try:
            return self.app.handler_map[config.name](event, LambdaContext(config.name, memory_size=1024))
        except Exception:  # noqa: BLE001 - Lambda would log it and answer 500
            log.exception("the %s handler failed", route_key)
            return {"statusCode": 500, "body": "Internal server error"}

    # --- the management API side: PostToConnection and friends --------------------------------

    def post(self, connection_id: str, data: bytes) -> bool:
        """Send a text frame to a client; False if it is gone."""
        socket = self._sockets.get(connection_id)
        if socket is None or self._loop is None:
            return False
        future = asyncio.run_coroutine_threadsafe(socket.send(data.decode("utf-8", "replace")), self._loop)
        try:
            future.result(SEND_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - closed, or too slow: API Gateway would call it gone
            future.cancel()
            return False
        return True

    def close_connection(self, connection_id: str) -> bool:
        socket = self._sockets.get(connection_id)
        if socket is None or self._loop is None:
            return False
        asyncio.run_coroutine_threadsafe(socket.close(), self._loop)
        return True

    def info(self, connection_id: str) -> dict[str, Any] | None:
        if connection_id not in self._sockets:
            return None
        return {
            "connectedAt": self._connected_at.get(connection_id, time.time()),
            "lastActiveAt": time.time(),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "local"},
        }


def _body_text(result: dict[str, Any]) -> str:
    body = result.get("body") or ""
    return body if isinstance(body, str) else json.dumps(body)


def _event(
    route_key: str, connection_id: str, domain: str, body: str | None = None, request: Any = None
) -> dict[str, Any]:
    """The event API Gateway would send for this route (the fields Chalice and sluice read)."""
    now = int(time.time() * 1000)
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route_key,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE"),
            "connectionId": connection_id,
            "apiId": API_ID,
            "domainName": domain,
            "stage": STAGE,
            "requestTimeEpoch": now,
            "messageId": secrets.token_hex(8),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    if request is not None:
        query = dict(parse_qsl(urlsplit(request.path).query))
        event["headers"] = {name: value for name, value in request.headers.raw_items()}
        event["queryStringParameters"] = query or None
    return event


def _management_handler(server: LocalWebSocketServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class for the management API, bound to `server`."""

    class Management(BaseHTTPRequestHandler):
        def _connection_id(self) -> str | None:
            path = urlsplit(self.path).path
            if "/@connections/" not in path:
                self._answer(404, {"message": f"No such path: {path}"}, "NotFoundException")
                return None
            return unquote(path.rsplit("/@connections/", 1)[1])

        def _answer(self, status: int, body: dict[str, Any], error: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.end_headers()
            self.wfile.write(data)

        def _gone(self, connection_id: str) -> None:
            self._answer(410, {"message": f"Connection {connection_id} is gone."}, "GoneException")

        def do_POST(self) -> None:
            connection_id = self._connection_id()
            if connection_id is None:
                return
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if server.post(connection_id, data):
                self._answer(200, {})
            else:
                self._gone(connection_id)

        def do_DELETE(self) -> None:
            connection_id = self._connection_id()
            if connection_id is None:
                return
            if server.close_connection(connection_id):
                self._answer(200, {})
            else:
                self._gone(connection_id)

        def do_GET(self) -> None:
            connection_id = self._connection_id()
            if connection_id is None:
                return
            info = server.info(connection_id)
            if info is None:
                self._gone(connection_id)
            else:
                self._answer(200, info)

        def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
            log.debug("management API: " + format, *args)

    return Management
