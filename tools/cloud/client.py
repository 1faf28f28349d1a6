"""The client side of the local cloud's HTTP API, as the phone app and the CLI use it."""
import http.client
import json
from urllib.parse import urlsplit


def call(base_url, method, path, body=None, token=None, raw=None, headers=None, timeout=10):
    """One request; returns (status, the decoded JSON answer, or its raw bytes if not JSON).
    body: a JSON value to send; raw: bytes to send as they are. OSError if unreachable."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = "Bearer " + token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        payload = r.read()
        try:
            return r.status, json.loads(payload)
        except ValueError:
            return r.status, payload
    finally:
        conn.close()
