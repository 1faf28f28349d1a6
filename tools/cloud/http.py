"""Minimal HTTP plumbing for the local cloud: a router (method + path pattern -> handler) served by
stdlib ThreadingHTTPServer on 127.0.0.1, started and stopped from Python.

    router = Router()
    router.add("GET", "/things/configs/{id}", handler)     # handler(req) -> Response
    svc = HTTPService(router, port=0).start(); svc.port; svc.stop()
    svc.faults.add("/update", "500", 2)                     # the next two /update... answer 500

`{name}` matches one path segment, possibly empty (so handlers can answer 400 for an empty ID).
Unknown path -> 404, known path with another method -> 405.
"""
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class Response:
    def __init__(self, status=200, body=b"", content_type=None, headers=None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.headers = dict(headers or {})
        if content_type:
            self.headers["Content-Type"] = content_type


def json_response(obj, status=200, headers=None):
    return Response(status, json.dumps(obj) + "\n", "application/json", headers)


def bearer_ok(req, token):
    """Does the request carry `Authorization: Bearer <token>`? (constant-time compare)"""
    auth = req.header("Authorization") or ""
    return auth.startswith("Bearer ") and secrets.compare_digest(auth[7:], token)


def error(status, message):
    """Mainflux-style error body: {"error": "..."}."""
    return json_response({"error": message}, status)


class Request:
    def __init__(self, method, path, query, headers, body, params):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.params = headers, body, params

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        """Decoded JSON body; raises ValueError if it is not JSON."""
        return json.loads(self.body.decode("utf-8") if self.body else "")


class Router:
    def __init__(self):
        self.routes = []   # (method, regex, handler)

    def add(self, method, pattern, handler):
        regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]*)", re.escape(pattern)) + "$"
        self.routes.append((method.upper(), re.compile(regex), handler))

    def route(self, method, pattern):
        def deco(fn):
            self.add(method, pattern, fn)
            return fn
        return deco

    def dispatch(self, req):
        path_known = False
        for method, regex, handler in self.routes:
            m = regex.match(req.path)
            if not m:
                continue
            path_known = True
            if method == req.method:
                req.params = {k: unquote(v) for k, v in m.groupdict().items()}
                return handler(req)
        return error(405, "method not allowed") if path_known else error(404, "not found")


class Faults:
    """Failures to inject, for tests of clients that must survive a bad server.
    add(path_prefix, kind, count=1): the next `count` requests whose path starts with
    path_prefix fail that way:

      "500"    answered 500 Internal Server Error, not processed
      "stall"  not processed; the connection is held for stall_s (past any device timeout),
               then closed without an answer
      "lost"   processed, then the connection is closed without an answer: the client
               cannot know its request worked (it will send it again)
    """
    KINDS = ("500", "stall", "lost")

    def __init__(self, stall_s=15.0):
        self.stall_s = stall_s
        self._plan = []             # [path_prefix, kind, count left]
        self.met = []               # (path, kind) of each fault served, in order
        self._lock = threading.Lock()

    def add(self, path_prefix, kind, count=1):
        if kind not in self.KINDS:
            raise ValueError("fault kind is one of %s" % ", ".join(self.KINDS))
        with self._lock:
            self._plan.append([path_prefix, kind, count])

    def take(self, path):
        """The fault the request at path meets, or None."""
        with self._lock:
            for f in self._plan:
                if path.startswith(f[0]):
                    f[2] -= 1
                    if f[2] <= 0:
                        self._plan.remove(f)
                    self.met.append((path, f[1]))
                    return f[1]
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "roost-cloud"
    sys_version = ""

    def log_message(self, fmt, *args):   # quiet; services can log themselves
        pass

    def _handle(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request(self.command, url.path, parse_qs(url.query), self.headers, body, {})
        fault = self.server.faults.take(url.path)
        if fault == "stall":
            time.sleep(self.server.faults.stall_s)
        if fault in ("stall", "lost"):
            if fault == "lost":
                self.server.router.dispatch(req)
            self.close_connection = True
            return
        try:
            resp = error(500, "injected fault") if fault else self.server.router.dispatch(req)
        except Exception as e:       # a handler bug must not kill the connection silently
            resp = error(500, f"internal error: {e.__class__.__name__}")
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128      # many boards connecting at once: no SYN drops / 1 s retries


class HTTPService:
    """Serve a Router on host:port (0 = free port) in a background thread."""

    def __init__(self, router, port=0, host="127.0.0.1", faults=None):
        self.router, self.host, self._want_port = router, host, port
        self.faults = faults or Faults()
        self._server = None
        self._thread = None

    @property
    def port(self):
        return self._server.server_address[1] if self._server else None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._server = _Server((self.host, self._want_port), _Handler)
        self._server.router = self.router
        self._server.faults = self.faults
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"cloud-http-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()
