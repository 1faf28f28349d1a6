"""The local cloud's certificates: a CA and the MQTT broker's server certificate signed by it.

RSA-2048 keys and SHA-256 signatures throughout: the device verifies the broker with MicroPython's
mbedTLS on the ESP32, where that is the combination every build supports. The CA PEM is what goes
into a device's factory config (`ca_cert`).

    pki = PKI(directory, names=("mqtt.roost.local", "localhost", "127.0.0.1")).ensure()
    pki.ca_pem, pki.ca_path, pki.cert_path, pki.key_path

Files (reused on restart; the server certificate is re-issued if a requested name is missing):
    ca.key, ca.pem, server.key, server.pem
"""
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("mqtt.roost.local", "localhost", "127.0.0.1")
CA_DAYS = 3650
SERVER_DAYS = 3650


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_private(path, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_cert(path, cert):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)


def _san(names):
    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _cert_names(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
           {str(v) for v in san.get_values_for_type(x509.IPAddress)}


class PKI:
    def __init__(self, directory, names=(), common_name="roost local cloud CA"):
        self.dir = Path(directory)
        wanted = list(DEFAULT_NAMES) + [str(n) for n in names if n]
        self.names = list(dict.fromkeys(wanted))      # ordered, unique
        self.common_name = common_name
        self.ca_key_path = self.dir / "ca.key"
        self.ca_path = self.dir / "ca.pem"
        self.key_path = self.dir / "server.key"
        self.cert_path = self.dir / "server.pem"

    @property
    def ca_pem(self):
        return self.ca_path.read_text()

    def ensure(self):
        """Create what is missing; keep what exists. Returns self."""
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        if self.ca_key_path.exists() and self.ca_path.exists():
            ca_key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
            ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            new_ca = False
        else:
            ca_key, ca, new_ca = _new_key(), None, True
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "roost")])
            ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                  .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - datetime.timedelta(days=1))
                  .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                               content_commitment=False, key_encipherment=False,
                                               data_encipherment=False, key_agreement=False,
                                               encipher_only=False, decipher_only=False), critical=True)
                  .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                                 critical=False)
                  .sign(ca_key, hashes.SHA256()))
            _write_private(self.ca_key_path, ca_key)
            _write_cert(self.ca_path, ca)
        if not new_ca and self.key_path.exists() and self.cert_path.exists():
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            if set(self.names) <= _cert_names(cert) and cert.issuer == ca.subject:
                return self
        self._issue_server(ca_key, ca, now)
        return self

    def _issue_server(self, ca_key, ca, now):
        key = _new_key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.names[0])]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
                .add_extension(x509.SubjectAlternativeName(_san(self.names)), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                             content_commitment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_private(self.key_path, key)
        _write_cert(self.cert_path, cert)
