"""JSON-RPC 2.0 over HTTP for a devnet chain object: any object with `call(method, params)`.

A ThreadingHTTPServer, since keep-alive clients would starve a single-threaded one, with TCP_NODELAY,
since delayed ACKs cost ~40 ms per call; batches answered in order.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Chain(Protocol):
    def call(self, method: str, params: list[Any]) -> Any: ...


class RpcFault(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _answer(chain: Chain, request: Any) -> dict[str, Any]:
    request_id = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise RpcFault(-32600, "Invalid request")
        params = request.get("params") or []
        return {"jsonrpc": "2.0", "id": request_id, "result": chain.call(request["method"], list(params))}
    except RpcFault as fault:
        error: dict[str, Any] = {"code": fault.code, "message": fault.message}
        if fault.data is not None:
            error["data"] = fault.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


def make_server(chain: Chain, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                request = json.loads(body)
            except ValueError:
                answer: Any = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            else:
                answer = [_answer(chain, r) for r in request] if isinstance(request, list) else _answer(chain, request)
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server
