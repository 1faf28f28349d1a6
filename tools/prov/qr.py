"""The QR code the phone apps scan to find a board and its PoP (spec 2.5).

The payload is compact JSON with the keys in the order Espressif's examples print them:
{"ver":"v1","name":"PROV_xxxxxx","pop":"...","transport":"ble"}; security 2 adds the SRP
username before the PoP; a board without PoP (security 0, no_pop) leaves "pop" out.
"""
import json

TRANSPORTS = ("ble", "softap")


def qr_payload(name, pop=None, transport="ble", username=None):
    if transport not in TRANSPORTS:
        raise ValueError("transport must be one of %s" % ", ".join(TRANSPORTS))
    doc = {"ver": "v1", "name": name}
    if pop:
        if username:
            doc["username"] = username
        doc["pop"] = pop
    doc["transport"] = transport
    return json.dumps(doc, separators=(",", ":"))


def qr_text(payload):
    """The QR code as terminal text (two modules per character cell), or None without segno."""
    try:
        import segno
    except ImportError:
        return None
    import io
    out = io.StringIO()
    segno.make(payload, error="l", micro=False).terminal(out=out, compact=True)
    return out.getvalue()
