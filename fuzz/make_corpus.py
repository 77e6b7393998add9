#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/ from IntegrationTests/support/kbproto.py (the independent Python codec).

Each file is one inbound byte stream: valid frames of every op and response, pipelined streams,
and malformed frames. Run it again after a protocol change; the files are committed.
"""
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "IntegrationTests" / "support"))
import kbproto as kb  # noqa: E402

OUT = ROOT / "fuzz" / "corpus"


def response(op, rid, status, body=b""):
    return kb.frame(struct.pack(">BIB", op, rid, status) + body)


def seeds():
    key = bytes(range(32))
    yield "req-hello", kb.hello(1, "default", "mariadbd 11.4")
    yield "req-hello-utf8", kb.hello(2, "inst\u00e9", "client \u2713")
    yield "req-latest-key", kb.latest_key(3, 1)
    yield "req-get-key", kb.get_key(4, 1, 2)
    yield "req-rotate", kb.rotate(5, 7)
    yield "req-rotate-all", kb.rotate(6, kb.ALL_KEYS)
    yield "req-status", kb.status(7)
    yield "req-admin", kb.admin(8, "rewrap alias/next")
    yield "req-pipelined", kb.hello(1) + kb.latest_key(2, 1) + kb.get_key(3, 1, 1) + kb.status(4)
    yield "req-max-frame", kb.admin(9, "x" * (kb.MAX_FRAME - 7))
    yield "resp-hello", response(kb.OP_HELLO, 1, kb.OK, struct.pack(">H", 1) + kb.string("keybrokerd"))
    yield "resp-latest-key", response(kb.OP_LATEST_KEY, 3, kb.OK, struct.pack(">IH", 2, len(key)) + key)
    yield "resp-get-key", response(kb.OP_GET_KEY, 4, kb.OK, struct.pack(">H", len(key)) + key)
    yield "resp-rotate", response(kb.OP_ROTATE, 5, kb.OK, struct.pack(">IIIII", 2, 1, 3, 2, 4))
    yield "resp-status", response(kb.OP_STATUS, 7, kb.OK, kb.string('{"instances":{}}'))
    yield "resp-failure", response(kb.OP_GET_KEY, 4, kb.NOT_FOUND, kb.string("no key 1 version 9"))
    yield "bad-zero-length", struct.pack(">I", 0) + b"\x01\x00\x00\x00\x01"
    yield "bad-over-long", struct.pack(">I", kb.MAX_FRAME + 1) + b"\x02\x00\x00\x00\x2a" + b"\x00" * 8
    yield "bad-over-long-short", struct.pack(">I", 0xFFFFFFFF) + b"\x02\x00"
    yield "bad-half-frame", kb.latest_key(10, 1)[:7]
    yield "bad-short-header", kb.frame(b"\x02\x00\x00")
    yield "bad-unknown-op", kb.request(0x7F, 11, b"\x00\x00\x00\x01")
    yield "bad-trailing", kb.request(kb.OP_LATEST_KEY, 12, struct.pack(">IB", 1, 0))
    yield "bad-short-body", kb.request(kb.OP_GET_KEY, 13, struct.pack(">I", 1))
    yield "bad-string-length", kb.request(kb.OP_HELLO, 14, struct.pack(">HH", 1, 200) + b"default")
    yield "bad-utf8", kb.request(kb.OP_HELLO, 15, struct.pack(">H", 1) + kb.string(b"\xc3\x28") + kb.string("c"))
    yield "bad-after-valid", kb.status(16) + struct.pack(">I", 0x00100000) + b"\x05\x00\x00\x00\x11"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in seeds():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()
