"""Why provision.bmc.redfish.transport is not sushy's Connector: run both against the same three
misbehaving peers on 127.0.0.1 and print what each did and how long it took.

    python -m bench.sushy_connector
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time

from sushy import connector as sushy_connector

from provision.bmc.base import BmcError
from provision.bmc.credentials import Credentials, Secret
from provision.bmc.redfish.transport import RedfishHttp
from tests.support.bmc.fixture_bmc import SilentServer


def _busy_server() -> tuple[http.server.ThreadingHTTPServer, list[float]]:
    hits: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self):
            hits.append(time.monotonic())
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(503 if len(hits) <= 2 else 204)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, hits


def _timed(fn) -> tuple[str, float]:
    start = time.monotonic()
    try:
        out = fn()
        text = f"ok {getattr(out, 'status_code', '')}"
    except BmcError as exc:
        text = f"{type(exc).__name__}: {exc.message}"
    except Exception as exc:
        text = f"{type(exc).__name__}"
    return text, time.monotonic() - start


def main() -> None:
    logging.disable(logging.WARNING)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    creds = Credentials("u", Secret("p"))
    rows = []
    url = f"http://127.0.0.1:{closed}"
    rows.append(
        (
            "closed port",
            "sushy",
            *_timed(
                lambda: sushy_connector.Connector(url, connect_timeout=2, default_request_timeout=2).get(
                    "/redfish/v1/"
                )
            ),
        )
    )
    rows.append(
        (
            "closed port",
            "ours",
            *_timed(
                lambda: RedfishHttp(url, creds, timeout=2, connect_timeout=2).request("GET", "/redfish/v1/")
            ),
        )
    )
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        rows.append(
            (
                "hung BMC, 2 s timeout",
                "sushy",
                *_timed(
                    lambda: sushy_connector.Connector(url, connect_timeout=2, default_request_timeout=2).get(
                        "/redfish/v1/"
                    )
                ),
            )
        )
        rows.append(
            (
                "hung BMC, 2 s timeout",
                "ours",
                *_timed(
                    lambda: RedfishHttp(url, creds, timeout=2, connect_timeout=2).request(
                        "GET", "/redfish/v1/"
                    )
                ),
            )
        )
    srv, hits = _busy_server()
    url = f"http://127.0.0.1:{srv.server_port}"
    rows.append(
        (
            "PATCH 503+Retry-After x2",
            "sushy",
            *_timed(lambda: sushy_connector.Connector(url, server_side_retries=5).patch("/x", data={})),
        )
    )
    n_sushy = len(hits)
    hits.clear()
    rows.append(
        (
            "PATCH 503+Retry-After x2",
            "ours",
            *_timed(lambda: RedfishHttp(url, creds).request("PATCH", "/x", json={})),
        )
    )
    n_ours = len(hits)
    srv.shutdown()
    for case, who, text, secs in rows:
        print(f"{case:26} {who:6} {secs:6.2f} s  {text}")
    print(f"PATCH attempts: sushy {n_sushy}, ours {n_ours}")


if __name__ == "__main__":
    main()
