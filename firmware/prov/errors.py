# The two ways a provisioning request is refused, in a module of their own so that every
# part of firmware/prov can name them without importing a security scheme's crypto.


class ProvError(Exception):
    """A request the device refuses: the transport reports it as a failed request."""


class AuthFailed(ProvError):
    """The client failed the proof of possession (wrong PoP or password)."""
