"""A reverse proxy in front of a real server that can hold or refuse chosen requests: how the
tests make a real MLflow server slow or failing on demand."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HoldingProxy:
    upstream: str
    path_fragment: str  # requests whose path contains this are held or refused
    release: threading.Event = field(default_factory=threading.Event)
    refuse_with: int | None = None  # answer matching requests with this status instead
    matched: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _handler(proxy: HoldingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if proxy.path_fragment in self.path:
                with proxy.lock:
                    proxy.matched += 1
                if proxy.refuse_with is not None:
                    self.send_response(proxy.refuse_with)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.release.wait(timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(
                proxy.upstream + self.path, data=body or None, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data, content_type = response.status, response.read(), response.headers.get("Content-Type")
            except urllib.error.HTTPError as error:
                status, data, content_type = error.code, error.read(), error.headers.get("Content-Type")
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward  # noqa: N815 - http.server's method names

    return Handler


def start_proxy(upstream: str, path_fragment: str, refuse_with: int | None = None) -> HoldingProxy:
    proxy = HoldingProxy(upstream, path_fragment, refuse_with=refuse_with)
    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
    return proxy
