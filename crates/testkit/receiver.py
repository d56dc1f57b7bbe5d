"""A callback receiver for paybridge's tests: verifies every delivery with the official
`standardwebhooks` library (PyPI), never with paybridge's own code, and records it.

    python receiver.py --port 0      # prints "listening <port>" once ready
    python receiver.py --port N --control '{"secrets": [...]}'
                                     # configured before it accepts a connection

Control (JSON):
    POST /_control {"secrets": [...], "fail_first": n, "fail_status": 500,
                    "fail_all": false, "retry_after": null}
        Every secret must verify a delivery for it to count as verified; the first
        `fail_first` attempts of each webhook-id are answered `fail_status`.
    GET  /_received   every request so far, in arrival order
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
config = {"secrets": [], "fail_first": 0, "fail_status": 500, "fail_all": False, "retry_after": None}
received = []
attempts = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_received":
            with lock:
                self.reply(200, json.dumps(received))
        else:
            self.reply(404, "{}")

    def do_POST(self):
        raw = self.body()
        if self.path == "/_control":
            with lock:
                config.update(json.loads(raw or b"{}"))
            self.reply(200, "{}")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            secrets = list(config["secrets"])
        verified_with = []
        payload = None
        for i, s in enumerate(secrets):
            try:
                payload = Webhook(s).verify(raw, headers)
                verified_with.append(i)
            except WebhookVerificationError:
                pass
        verified = bool(secrets) and len(verified_with) == len(secrets)
        wid = headers.get("webhook-id", "")
        with lock:
            attempts[wid] = attempts.get(wid, 0) + 1
            n = attempts[wid]
            if not verified:
                status = 400
            elif config["fail_all"] or n <= config["fail_first"]:
                status = config["fail_status"]
            else:
                status = 200
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            received.append({
                "webhook_id": wid,
                "timestamp": headers.get("webhook-timestamp"),
                "signatures": len(headers.get("webhook-signature", "").split(" ")),
                "verified": verified,
                "verified_with": verified_with,
                "type": (body or {}).get("type"),
                "event_id": (body or {}).get("id"),
                "object_id": ((body or {}).get("data") or {}).get("object", {}).get("id")
                if isinstance(((body or {}).get("data") or {}).get("object"), dict) else None,
                "attempt": n,
                "status": status,
                "at": time.time(),
            })
            extra = {}
            if status != 200 and config["retry_after"] is not None:
                extra["retry-after"] = str(config["retry_after"])
        self.reply(status, json.dumps({"ok": status == 200, "attempt": n}), extra)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control", default="{}", help="the first /_control body")
    args = p.parse_args()
    config.update(json.loads(args.control))
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
