"""A real KMIP server for the kmip provider's tests: PyKMIP 0.11's server (SQLite store) over
mutual TLS, with a CA, server and client certificates made here with openssl. Started once per
test process (`shared()`), as moto is per module.

Facts about PyKMIP 0.11 that shape these helpers: a key may be used only by the certificate (its
common name) that created it, so master keys are made with the broker's own client certificate;
Decrypt needs the key Active; Destroy deletes the object; TLS 1.2 offers AEAD cipher suites only
for ECDSA certificates (so all keys here are P-256); client certificates need the clientAuth
extended key usage; a server addressed by IP needs an IP SAN.
"""
import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from awsmoto import free_port
from relay import TCPRelay, listener

EXTENSIONS = """
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
[noeku]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class PKI:
    """Two CAs (the real one and a stranger's) and the certificates the tests need, P-256."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "ext.cnf").write_text(EXTENSIONS)
        for ca in ("ca", "other-ca"):
            self._key(ca)
            openssl("req", "-x509", "-new", "-key", f"{ca}.key", "-subj", f"/CN=keybroker test {ca}", "-days", "30",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign",
                    "-out", f"{ca}.pem", cwd=self.dir)
        self.issue("server", "ca", "server", cn="localhost")
        self.issue("client", "ca", "client", cn="keybroker")
        self.issue("stranger", "ca", "client", cn="someone-else")
        self.issue("other-server", "other-ca", "server", cn="localhost")
        self.issue("other-client", "other-ca", "client", cn="keybroker")
        self.issue("noeku-client", "ca", "noeku", cn="keybroker")

    def _key(self, name):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=self.dir)
        os.chmod(self.dir / f"{name}.key", 0o600)

    def issue(self, name, ca, extensions, cn):
        self._key(name)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr", cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-days", "30", "-extfile", "ext.cnf", "-extensions", extensions, "-out", f"{name}.pem", cwd=self.dir)

    def cert(self, name):
        return str(self.dir / f"{name}.pem")

    def key(self, name):
        return str(self.dir / f"{name}.key")


class KMIPServer:
    """pykmip-server on 127.0.0.1, its SQLite database kept across restarts."""

    def __init__(self, directory, pki):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "policies").mkdir(exist_ok=True)
        self.pki = pki
        self.port = free_port()
        self.proc = None
        self.log_path = self.dir / "pykmip-server.log"

    def start(self, server_cert="server", ca="ca"):
        config = self.dir / "server.conf"
        config.write_text("\n".join([
            "[server]", "hostname=127.0.0.1", f"port={self.port}",
            f"certificate_path={self.pki.cert(server_cert)}", f"key_path={self.pki.key(server_cert)}",
            f"ca_path={self.pki.cert(ca)}", "auth_suite=TLS1.2", f"policy_path={self.dir / 'policies'}",
            "enable_tls_client_auth=True", "logging_level=INFO", f"database_path={self.dir / 'pykmip.db'}", ""]))
        out = open(self.dir / "pykmip-server.out", "ab")
        self.proc = subprocess.Popen(["pykmip-server", "-f", str(config), "-l", str(self.log_path)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pykmip-server exited with {self.proc.returncode}; see {self.dir}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pykmip-server did not listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, **kwargs):
        self.stop()
        return self.start(**kwargs)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def client(self, cert="client"):
        """PyKMIP's own client, as the key manager's administrator would use it."""
        from kmip.core import enums
        from kmip.pie import client
        logging.getLogger("kmip").setLevel(logging.ERROR)
        config = self.dir / "client.conf"
        if not config.exists():
            config.write_text("[client]\n")  # keeps PyKMIP from reading a config elsewhere on the machine
        return client.ProxyKmipClient(hostname="127.0.0.1", port=self.port, cert=self.pki.cert(cert), key=self.pki.key(cert),
                                      ca=self.pki.cert("ca"), kmip_version=enums.KMIPVersion.KMIP_1_4,
                                      config_file=str(config))

    def create_master_key(self, name=None, activate=True, cert="client", length=256):
        from kmip.core import enums
        with self.client(cert) as c:
            uid = c.create(enums.CryptographicAlgorithm.AES, length, name=name,
                           cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT])
            if activate:
                c.activate(uid)
        return uid

    def revoke(self, uid):
        from kmip.core import enums
        with self.client() as c:
            c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)

    def destroy(self, uid):
        """Revoke, then Destroy (an Active key cannot be destroyed); PyKMIP deletes the object."""
        self.revoke(uid)
        with self.client() as c:
            c.destroy(uid)

    def master_key_bytes(self, uid):
        """The master key's value, as Get returns it to its owner: lets a test unwrap a stored blob
        without keybroker (a real HSM would not hand it out; PyKMIP does)."""
        with self.client() as c:
            return bytes(c.get(uid).value)


def parse_blob(blob):
    """A kmip-key file, as docs/kmip.md describes it."""
    assert blob[:4] == b"KBKM" and blob[4] == 1
    out = {"mode": blob[5], "key_len": blob[6], "kmip": (blob[7], blob[8])}
    i = 9
    n = int.from_bytes(blob[i:i + 2], "big"); i += 2
    out["uid"] = blob[i:i + n].decode(); i += n
    n = blob[i]; i += 1
    out["iv"] = blob[i:i + n]; i += n
    n = blob[i]; i += 1
    out["tag"] = blob[i:i + n]; i += n
    n = int.from_bytes(blob[i:i + 2], "big"); i += 2
    out["ciphertext"] = blob[i:i + n]; i += n
    out["check"] = blob[i:i + 16]; i += 16
    assert i == len(blob)
    return out


def binding(key_id, version):
    return b"keybroker-kmip-key-v1\x00" + key_id.to_bytes(4, "big") + version.to_bytes(4, "big")


def unwrap_blob(blob, master_key, key_id, version):
    """Unwraps a kmip-key file with the master key's bytes, following docs/kmip.md only."""
    import hashlib
    import hmac
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    b = parse_blob(blob)
    if b["mode"] == 1:
        key = AESGCM(master_key).decrypt(b["iv"], b["ciphertext"] + b["tag"], binding(key_id, version)) \
            if len(b["iv"]) == 12 else _gcm_long_iv(master_key, b, binding(key_id, version))
    else:
        d = Cipher(algorithms.AES(master_key), modes.CBC(b["iv"])).decryptor()
        padded = d.update(b["ciphertext"]) + d.finalize()
        u = padding.PKCS7(128).unpadder()
        key = u.update(padded) + u.finalize()
    check = hmac.new(key, binding(key_id, version) + bytes([b["mode"]]), hashlib.sha256).digest()[:16]
    assert check == b["check"], "check value does not match"
    return key


def _gcm_long_iv(master_key, b, aad):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    d = Cipher(algorithms.AES(master_key), modes.GCM(b["iv"], b["tag"])).decryptor()
    d.authenticate_additional_data(aad)
    return d.update(b["ciphertext"]) + d.finalize()


class Relay(TCPRelay):
    """A TCP relay in front of the KMIP server that a test can turn into a black hole (accepts,
    reads, never answers) and back: a server that hangs. Hand-written because no real server
    misbehaves on cue; it relays the real server's bytes untouched otherwise."""

    def __init__(self, upstream_port, host="127.0.0.1"):
        super().__init__(upstream_port)
        self.listener = listener(host, backlog=64)
        self.address = f"{host}:{self.listener.getsockname()[1]}"
        self.silent = threading.Event()
        self.closed = False
        self.serve(self.listener)

    def accepting(self, listening):
        return not self.closed

    def hold(self):
        while self.silent.is_set() and not self.closed:
            time.sleep(0.05)  # swallow: hold the bytes and never deliver them

    def close(self):
        self.closed = True
        self.listener.close()
        with self.lock:
            sockets = list(self.connections)
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass


_shared = None


def shared():
    """The one PKI and PyKMIP server of this test process."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="keybroker-kmip-", dir="/tmp"))
        os.chmod(directory, 0o755)
        pki = PKI(directory / "pki")
        server = KMIPServer(directory / "server", pki).start()
        _shared = server

        def cleanup():
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)
        atexit.register(cleanup)
    return _shared


def kmip_instance(server, master_key_id=None, address=None, client="client", ca="ca", **extra):
    settings = {"provider": "kmip", "kmip_server": address or server.address, "kmip_ca_file": server.pki.cert(ca),
                "kmip_client_cert_file": server.pki.cert(client), "kmip_client_key_file": server.pki.key(client),
                "request_timeout_ms": 3000, "max_retries": 1}
    from broker import me
    settings["clients"] = [me()]
    if master_key_id:
        settings["master_key_id"] = master_key_id
    settings.update(extra)
    return {k: v for k, v in settings.items() if v is not None}
