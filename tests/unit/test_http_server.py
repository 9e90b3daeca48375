import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler

from serving.http_server import LiteralHTTPServer


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.server.server_name}:{self.server.server_port}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_server_binds_and_names_itself_by_its_address_without_resolving_a_name(monkeypatch):
    looked_up: list[str] = []

    def getfqdn(name: str = "") -> str:
        looked_up.append(name)
        raise AssertionError("a name was resolved")

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    server = LiteralHTTPServer(("127.0.0.1", 0), _Hello)
    try:
        assert looked_up == []
        port = server.socket.getsockname()[1]
        assert (server.server_name, server.server_port) == ("127.0.0.1", port) and port != 0
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (200, f"127.0.0.1:{port}".encode())
        conn.close()
    finally:
        server.shutdown()
        server.server_close()

