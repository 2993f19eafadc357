"""A small STUN/TURN client in Python (RFC 8489, RFC 8656), written from the RFCs and
independent of the server's C codec, for tests that need many allocations or exact control
over requests: build and parse messages, long-term credentials (MESSAGE-INTEGRITY), XOR
addresses, Allocate / Refresh / CreatePermission / ChannelBind, ChannelData."""
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import zlib

MAGIC = 0x2112A442
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, CHANNEL_BIND = 1, 3, 4, 6, 7, 8, 9
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3
A_MAPPED = 0x0001
A_USERNAME = 0x0006
A_MI = 0x0008
A_ERROR = 0x0009
A_CHANNEL = 0x000C
A_LIFETIME = 0x000D
A_PEER = 0x0012
A_DATA = 0x0013
A_REALM = 0x0014
A_NONCE = 0x0015
A_RELAYED = 0x0016
A_TRANSPORT = 0x0019
A_XOR_MAPPED = 0x0020
A_SOFTWARE = 0x8022
A_FINGERPRINT = 0x8028


def msg_type(method, cls):
    return ((method & 0xF80) << 2) | ((method & 0x70) << 1) | (method & 0xF) | \
        ((cls & 2) << 7) | ((cls & 1) << 4)


def split_type(t):
    cls = ((t >> 7) & 2) | ((t >> 4) & 1)
    method = ((t >> 2) & 0xF80) | ((t >> 1) & 0x70) | (t & 0xF)
    return method, cls


def xaddr(tid, ip, port):
    a = ipaddress.ip_address(ip)
    xp = port ^ (MAGIC >> 16)
    if a.version == 4:
        x = int(a) ^ MAGIC
        return struct.pack("!BBHI", 0, 1, xp, x)
    key = struct.pack("!I", MAGIC) + tid
    raw = bytes(b ^ k for b, k in zip(a.packed, key))
    return struct.pack("!BBH", 0, 2, xp) + raw


def parse_xaddr(tid, v):
    fam, xp = v[1], struct.unpack("!H", v[2:4])[0]
    port = xp ^ (MAGIC >> 16)
    if fam == 1:
        ip = ipaddress.ip_address(struct.unpack("!I", v[4:8])[0] ^ MAGIC)
    else:
        key = struct.pack("!I", MAGIC) + tid
        ip = ipaddress.ip_address(bytes(b ^ k for b, k in zip(v[4:20], key)))
    return str(ip), port


class Msg:
    def __init__(self, method, cls, tid=None):
        self.method, self.cls = method, cls
        self.tid = tid or os.urandom(12)
        self.attrs = []

    def add(self, t, v):
        self.attrs.append((t, v))
        return self

    def encode(self, key=None, fingerprint=False):
        body = b""
        for t, v in self.attrs:
            body += struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)

        def head(extra):
            return struct.pack("!HHI", msg_type(self.method, self.cls), len(body) + extra,
                               MAGIC) + self.tid
        if key is not None:
            mac = hmac.new(key, head(24) + body, hashlib.sha1).digest()
            body += struct.pack("!HH", A_MI, 20) + mac
        if fingerprint:
            crc = (zlib.crc32(head(8) + body) ^ 0x5354554E) & 0xFFFFFFFF
            body += struct.pack("!HHI", A_FINGERPRINT, 4, crc)
        return head(0) + body


def parse(b):
    t, length, magic = struct.unpack("!HHI", b[:8])
    assert magic == MAGIC, "not STUN"
    method, cls = split_type(t)
    tid = b[8:20]
    attrs, off = {}, 20
    while off < 20 + length:
        at, al = struct.unpack("!HH", b[off:off + 4])
        attrs.setdefault(at, b[off + 4:off + 4 + al])
        off += 4 + al + (-al % 4)
    return method, cls, tid, attrs


def error_code(attrs):
    v = attrs.get(A_ERROR)
    return None if v is None else v[2] * 100 + v[3]


def lt_key(user, realm, password):
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).digest()


class TurnClient:
    """One UDP socket = one 5-tuple = at most one allocation."""

    def __init__(self, server, user, password, timeout=5):
        self.server = server
        self.user, self.password = user, password
        self.s = socket.socket(socket.AF_INET6 if ":" in server[0] else socket.AF_INET,
                               socket.SOCK_DGRAM)
        self.s.settimeout(timeout)
        self.s.connect(server)
        self.realm = self.nonce = self.key = None

    def close(self):
        self.s.close()

    def transact(self, m, auth=True):
        """Send m (authenticated once realm/nonce are known; retried once after 401/438)."""
        for _ in range(3):
            if auth and self.nonce is not None:
                m.attrs = [a for a in m.attrs if a[0] not in (A_USERNAME, A_REALM, A_NONCE)]
                m.add(A_USERNAME, self.user.encode()).add(A_REALM, self.realm)
                m.add(A_NONCE, self.nonce)
                self.s.send(m.encode(self.key))
            else:
                self.s.send(m.encode())
            while True:
                method, cls, tid, attrs = parse(self.s.recv(65536))
                if tid == m.tid:
                    break
            code = error_code(attrs)
            if auth and cls == ERROR and code in (401, 438) and A_NONCE in attrs:
                self.realm, self.nonce = attrs[A_REALM] if A_REALM in attrs else self.realm, \
                    attrs[A_NONCE]
                self.key = lt_key(self.user, self.realm.decode(), self.password)
                m.tid = os.urandom(12)
                continue
            return cls, attrs, tid
        return cls, attrs, tid

    def allocate(self, lifetime=None):
        m = Msg(ALLOCATE, REQUEST).add(A_TRANSPORT, bytes([17, 0, 0, 0]))
        if lifetime is not None:
            m.add(A_LIFETIME, struct.pack("!I", lifetime))
        cls, attrs, tid = self.transact(m)
        if cls != SUCCESS:
            return None, error_code(attrs)
        return parse_xaddr(tid, attrs[A_RELAYED]), None

    def refresh(self, lifetime):
        m = Msg(REFRESH, REQUEST).add(A_LIFETIME, struct.pack("!I", lifetime))
        cls, attrs, _ = self.transact(m)
        return cls == SUCCESS, error_code(attrs)

    def permit(self, ip, port=0):
        m = Msg(CREATE_PERMISSION, REQUEST)
        m.add(A_PEER, xaddr(m.tid, ip, port))
        cls, attrs, _ = self.transact(m)
        return cls == SUCCESS, error_code(attrs)

    def bind(self, channel, ip, port):
        m = Msg(CHANNEL_BIND, REQUEST).add(A_CHANNEL, struct.pack("!HH", channel, 0))
        m.add(A_PEER, xaddr(m.tid, ip, port))
        cls, attrs, _ = self.transact(m)
        return cls == SUCCESS, error_code(attrs)

    def send_channel(self, channel, data):
        self.s.send(struct.pack("!HH", channel, len(data)) + data)

    def recv_channel(self):
        b = self.s.recv(65536)
        ch, n = struct.unpack("!HH", b[:4])
        return ch, b[4:4 + n]

    def send_indication(self, ip, port, data):
        m = Msg(SEND, INDICATION)
        m.add(A_PEER, xaddr(m.tid, ip, port)).add(A_DATA, data)
        self.s.send(m.encode())
