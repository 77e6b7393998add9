"""A recording reverse proxy in front of moto_server: forwards every request unchanged (the Host
header too, so SigV4 signatures still verify) and records what moto answered, so a test can
compare the broker's log with moto's real responses (request ids, status codes). It is not a
fake: every answer comes from moto."""
import http.client
import http.server
import socketserver
import threading
import urllib.parse

import pytest


class RecordingProxy:
    def __init__(self, upstream):
        self.upstream = urllib.parse.urlparse(upstream)
        self.exchanges = []  # dicts: target, status, request_id, request (the body sent)
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                with proxy.lock:
                    proxy.exchanges.append({"target": self.headers.get("X-Amz-Target") or self.path, "status": answer.status,
                                            "request_id": answer.getheader("x-amzn-RequestId"), "request": body})
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = forward

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def recorded(self):
        with self.lock:
            return list(self.exchanges)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def proxy_fixture():
    """A RecordingProxy in front of the module's `moto` fixture, new for every test (so each test
    sees only its own exchanges): `proxy = proxy_fixture()` at a module's top level."""
    @pytest.fixture
    def proxy(moto):
        p = RecordingProxy(moto.url)
        yield p
        p.stop()
    return proxy
