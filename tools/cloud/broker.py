"""The local cloud's MQTT broker: a real Mosquitto process with a TLS listener for devices and a
plain loopback listener for the cloud's own client.

    broker = Broker(directory, pki, tls_port=0, bind="127.0.0.1").start()
    broker.set_account("thing-id", "thing-key", ["topic readwrite node/abc/#"])
    broker.remove_account("thing-id")
    broker.stop(); broker.start()          # same ports again

Accounts live in Mosquitto's password file (`$7$` PBKDF2-SHA512, written here) and ACL file; every
change rewrites both atomically, sends SIGHUP (Mosquitto reloads both) and waits until the reload
took effect: each rewrite gives the hidden account `roost-reload` a fresh password, and the change is
done when that password logs in. `allow_anonymous false` on both listeners.
"""
import base64
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

SUPERUSER = "roost-cloud"
RELOAD_USER = "roost-reload"


class BrokerError(Exception):
    pass


def find_mosquitto():
    """Path of the mosquitto binary, or None."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def password_hash(password, salt=None, iterations=101):
    """Mosquitto 2.x password file entry value: $7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def free_port(host="127.0.0.1", avoid=()):
    """A TCP port nothing listens on now, and none of `avoid`: the kernel may hand out the same
    ephemeral port to two binds in a row, and Mosquitto refuses two listeners on one port."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def _mqtt_str(b):
    return len(b).to_bytes(2, "big") + b


def mqtt_login(port, username, password, host="127.0.0.1", timeout=2.0):
    """One MQTT 3.1.1 CONNECT with credentials on a plain listener; returns the CONNACK return code
    (0 = accepted, 4 = bad user name or password, 5 = not authorised). Raises OSError."""
    body = (b"\x00\x04MQTT\x04\xc2\x00\x0a" + _mqtt_str(b"roost-probe-" + secrets.token_hex(4).encode())
            + _mqtt_str(username.encode()) + _mqtt_str(password.encode()))
    with socket.create_connection((host, port), timeout) as s:
        s.settimeout(timeout)
        s.sendall(bytes((0x10, len(body))) + body)
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            ack += chunk
        if ack[0] != 0x20:
            raise ConnectionError("not a CONNACK: %r" % ack)
        if ack[3] == 0:
            s.sendall(b"\xe0\x00")
        return ack[3]


def _write_atomic(path, text, mode=0o600):
    tmp = Path(str(path) + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _check_name(name):
    if not name or any(c in name for c in ": \t\r\n") or name in (SUPERUSER, RELOAD_USER):
        raise ValueError("bad MQTT user name %r" % (name,))


class Broker:
    def __init__(self, directory, pki, tls_port=0, bind="127.0.0.1", plain_port=0, exe=None):
        self.dir = Path(directory)
        self.pki = pki
        self.bind = bind
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.exe = exe or find_mosquitto()
        self.superuser = SUPERUSER
        self.superuser_password = secrets.token_urlsafe(24)
        self.conf_path = self.dir / "mosquitto.conf"
        self.passwd_path = self.dir / "mosquitto.passwd"
        self.acl_path = self.dir / "mosquitto.acl"
        self.log_path = self.dir / "mosquitto.log"
        self._accounts = {}           # user name -> (password hash, [acl lines])
        self._reload_password = ""
        self._lock = threading.RLock()
        self.proc = None

    # --- lifecycle ---

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Start Mosquitto (ports chosen on the first start are kept for later starts)."""
        with self._lock:
            if self.running:
                return self
            if not self.exe:
                raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
            self.dir.mkdir(parents=True, exist_ok=True)
            self.plain_port = self.plain_port or free_port()
            self.tls_port = self.tls_port or free_port("127.0.0.1" if self.bind == "0.0.0.0" else self.bind,
                                                       avoid=(self.plain_port,))
            self._write_files()
            self._write_conf()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([self.exe, "-c", str(self.conf_path)], stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_reloaded(timeout)
            tls_host = "127.0.0.1" if self.bind == "0.0.0.0" else self.bind
            self._wait_port(tls_host, self.tls_port, timeout)
            return self

    def stop(self):
        with self._lock:
            if self.proc is None:
                return
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- accounts ---

    def set_account(self, username, password, acl_lines=()):
        """Add or replace one account; returns when Mosquitto has loaded it."""
        self.update({username: (password, acl_lines)})

    def remove_account(self, username):
        self.update({}, remove=(username,))

    def update(self, accounts, remove=()):
        """Set several accounts ({name: (password, acl lines)}) and remove others in one reload.
        A password of None keeps the account's current password (an ACL-only change)."""
        with self._lock:
            for name, (password, acl) in accounts.items():
                _check_name(name)
                acl = [str(line).strip() for line in acl]
                if any("\n" in line or not line.startswith("topic ") for line in acl):
                    raise ValueError("ACL lines must be single `topic ...` lines")
                if password is None:
                    if name not in self._accounts:
                        raise KeyError(name)
                    hashed = self._accounts[name][0]
                else:
                    hashed = password_hash(password)
                self._accounts[name] = (hashed, acl)
            for name in remove:
                self._accounts.pop(name, None)
            self._write_files()
            if self.running:
                self.proc.send_signal(signal.SIGHUP)
                self._wait_reloaded()

    def accounts(self):
        with self._lock:
            return {name: list(acl) for name, (_, acl) in self._accounts.items()}

    def login(self, username, password):
        """CONNACK return code of a login on the plain listener (0 = accepted)."""
        return mqtt_login(self.plain_port, username, password)

    # --- files ---

    def _write_conf(self):
        user = pwd.getpwuid(os.getuid()).pw_name   # as root, mosquitto would drop to "mosquitto"
        conf = [
            "user %s" % user,
            "per_listener_settings false",
            "persistence false",
            "log_dest file %s" % self.log_path,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "allow_anonymous false",
            "password_file %s" % self.passwd_path,
            "acl_file %s" % self.acl_path,
            "",
            "# the cloud's own client",
            "listener %d 127.0.0.1" % self.plain_port,
            "",
            "# devices",
            "listener %d %s" % (self.tls_port, self.bind),
            "cafile %s" % self.pki.ca_path,
            "certfile %s" % self.pki.cert_path,
            "keyfile %s" % self.pki.key_path,
            "require_certificate false",
            "tls_version tlsv1.2",
        ]
        _write_atomic(self.conf_path, "\n".join(conf) + "\n", 0o644)

    def _write_files(self):
        self._reload_password = secrets.token_urlsafe(16)
        users = [(SUPERUSER, password_hash(self.superuser_password), ["topic readwrite #"]),
                 (RELOAD_USER, password_hash(self._reload_password), [])]
        users += [(n, h, acl) for n, (h, acl) in sorted(self._accounts.items())]
        _write_atomic(self.passwd_path, "".join("%s:%s\n" % (n, h) for n, h, _ in users))
        acl = []
        for name, _, lines in users:
            acl += ["user %s" % name] + lines + [""]
        _write_atomic(self.acl_path, "\n".join(acl))

    # --- waiting ---

    def _check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-5:])
            raise BrokerError("mosquitto is not running: %s" % tail)

    def _wait_port(self, host, port, timeout):
        end = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                socket.create_connection((host, port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > end:
                    raise BrokerError("mosquitto did not open port %d" % port) from None
                time.sleep(0.02)

    def _wait_reloaded(self, timeout=10.0):
        """Until the current files are in force: the reload account's newest password logs in."""
        end = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if mqtt_login(self.plain_port, RELOAD_USER, self._reload_password, timeout=1.0) == 0:
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                raise BrokerError("mosquitto did not load its password file")
            time.sleep(0.02)
