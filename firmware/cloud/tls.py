# The TLS context for the cloud: made once per online phase, before anything else is
# loaded (see App.online), and shared by every connection to the broker.


def context(ca_pem):
    """An SSLContext that verifies servers against ca_pem (PEM text); None if there is no CA
    (then the device refuses TLS brokers rather than trusting any certificate)."""
    if not ca_pem:
        return None
    import ssl
    from binascii import a2b_base64
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # MicroPython's mbedTLS takes DER here (its build cannot parse PEM).
    der = a2b_base64("".join(l for l in ca_pem.split("\n") if l and not l.startswith("-----")))
    ctx.load_verify_locations(cadata=der)
    return ctx
