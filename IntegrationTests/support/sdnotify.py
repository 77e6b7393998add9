"""A datagram socket that stands in for systemd's NOTIFY_SOCKET: what the daemon sends with
sd_notify (READY=1, STATUS=…, RELOADING=1, WATCHDOG=1)."""
import socket
import time


class NotifyListener:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def collect(self, until, timeout=20):
        """Reads lines until `until(lines so far)` is true; False after `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.messages += self.sock.recv(65536).decode().split("\n")
            except socket.timeout:
                pass
            if until(self.messages):
                return True
        return False

    def drain(self):
        """Every line received so far (waits 0.2 s for the last datagram)."""
        self.collect(lambda _: False, timeout=0.2)
        return self.messages

    def close(self):
        self.sock.close()
