"""A stand-in application for the compose demo, standard library only.

GET /        200 and a line of text
GET /close   closes the connection without answering (handoff: closed_before_response)
GET /reset   resets the connection without answering (handoff: reset_before_response)
"""

import os
import socket
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path == "/reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
            self.close_connection = True
            return
        body = b"hello from the app\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    host, port = os.environ.get("APP_LISTEN", "127.0.0.1:3000").rsplit(":", 1)
    print(f"app listening on {host}:{port}")
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
