#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz corpora (corpus/<target>/seed-*).

The seeds are small, well-formed examples of each input (a DNS answer with a CNAME chain, a
ClientHello, an HTTP/2 exchange with HPACK ...) so that the fuzzer starts from inputs that
reach deep into each parser. Run from anywhere; it only writes the seed-* files. The rest of
each corpus is what `cargo fuzz cmin` kept from the fuzzing runs.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------- DNS

def name(n):
    out = b""
    for label in n.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_header(id_, flags, qd, an, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def rr(owner, rtype, ttl, rdata):
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


A, CNAME, AAAA, HTTPS = 1, 5, 28, 65

query = dns_header(0x1A2B, 0x0100, 1, 0) + name("www.shop.test") + struct.pack(">HH", A, 1)
q_name = 12  # compression pointer target: the question name
answer = (
    dns_header(0x1A2B, 0x8180, 1, 2)
    + name("www.shop.test") + struct.pack(">HH", A, 1)
    + rr(b"\xc0\x0c", CNAME, 60, name("edge.cdn.test"))
    + rr(name("edge.cdn.test"), A, 30, bytes([10, 77, 0, 3]))
)
# HTTPS 1 . alpn=h2,http/1.1 ipv4hint=10.77.0.3 ipv6hint=fd77::3
svc = struct.pack(">H", 1) + b"\0"
alpn = b"\x02h2\x08http/1.1"
svc += struct.pack(">HH", 1, len(alpn)) + alpn
svc += struct.pack(">HH", 4, 4) + bytes([10, 77, 0, 3])
svc += struct.pack(">HH", 6, 16) + bytes.fromhex("fd770000000000000000000000000003")
https = (
    dns_header(7, 0x8180, 1, 1)
    + name("edge.cdn.test") + struct.pack(">HH", HTTPS, 1)
    + rr(b"\xc0\x0c", HTTPS, 300, svc)
)
aaaa = (
    dns_header(8, 0x8180, 1, 1)
    + name("edge.cdn.test") + struct.pack(">HH", AAAA, 1)
    + rr(b"\xc0\x0c", AAAA, 300, bytes.fromhex("fd770000000000000000000000000003"))
)
nxdomain = dns_header(9, 0x8183, 1, 0) + name("nope.shop.test") + struct.pack(">HH", A, 1)
for n, m in [("query", query), ("cname", answer), ("https", https), ("aaaa", aaaa), ("nxdomain", nxdomain)]:
    write("dns", n, m)
write("dns", "tcp-cname", struct.pack(">H", len(answer)) + answer)

# ---------------------------------------------------------------------------------- TLS


def record(ty, body, version=0x0303):
    return struct.pack(">BHH", ty, version, len(body)) + body


def handshake(ty, body):
    return bytes([ty]) + len(body).to_bytes(3, "big") + body


def ext(ty, data):
    return struct.pack(">HH", ty, len(data)) + data


def client_hello(sni="shop.test", alpn_names=(b"h2", b"http/1.1")):
    host = sni.encode()
    sni_ext = ext(0, struct.pack(">H", len(host) + 3) + b"\0" + struct.pack(">H", len(host)) + host)
    protos = b"".join(bytes([len(p)]) + p for p in alpn_names)
    alpn_ext = ext(16, struct.pack(">H", len(protos)) + protos)
    versions = ext(43, b"\x06\x3a\x3a\x03\x04\x03\x03")  # GREASE, TLS 1.3, TLS 1.2
    exts = sni_ext + alpn_ext + versions + ext(0x0a0a, b"")
    body = struct.pack(">H", 0x0303) + bytes(32) + b"\x20" + bytes(32)
    body += struct.pack(">H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return handshake(1, body)


def server_hello():
    exts = ext(43, b"\x03\x04")
    body = struct.pack(">H", 0x0303) + bytes(32) + b"\x20" + bytes(32) + b"\x13\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return handshake(2, body)


ch = client_hello()
write("tls_hello", "client-hello", record(22, ch, 0x0301))
write("tls_hello", "client-hello-split", record(22, ch[:40], 0x0301) + record(22, ch[40:], 0x0301))
write("tls_hello", "server-hello", record(22, server_hello()))
write("tls_hello", "alert", record(21, b"\x02\x28"))

# ------------------------------------------------------------------ transcripts (http, tls_wire)


def transcript(client, server, cuts=()):
    """cuts: (recv, captured, gap, elapsed_ns, take) in the order of fuzz_targets/transcript.rs."""
    out = b""
    for recv, captured, gap, elapsed, take in cuts:
        out += b"\x01" + struct.pack("<BHHBB", recv, captured, gap, elapsed, take)
    out += b"\x00" + struct.pack("<H", len(client))
    return out + client + server


c_hello = record(22, client_hello(), 0x0301)
s_flight = record(22, server_hello()) + record(20, b"\x01") + record(23, bytes(40)) + record(23, bytes(60))
c_fin = record(20, b"\x01") + record(23, bytes(30))
c_req = record(23, bytes(80))
s_resp = record(23, bytes(500)) + record(23, bytes(100))
write("tls_wire", "tls13", transcript(
    c_hello + c_fin + c_req, s_flight + s_resp,
    [(0, len(c_hello), 0, 10, 0), (1, len(s_flight), 0, 50, 0), (0, len(c_fin), 0, 5, 0),
     (0, len(c_req), 0, 5, 0), (1, 200, len(s_resp) - 200, 40, 1)],
))
write("tls_wire", "header-split", transcript(
    c_hello + c_req, s_flight + s_resp,
    [(0, 3, 0, 1, 0), (0, len(c_hello) - 3, 0, 1, 0), (1, len(s_flight), 0, 9, 0), (0, len(c_req), 0, 1, 0)],
))

# HTTP/1.1
get = b"GET /a?q=1 HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"
ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
write("http", "h1-get", transcript(get, ok))
write("http", "h1-cut-head", transcript(get, ok, [(0, 20, 0, 1, 0), (0, 200, 0, 1, 0), (1, 30, 0, 9, 0), (1, 10, 0, 1, 1)]))
post = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\npayload"
chunked = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
pipelined = b"GET /c HTTP/1.1\r\nHost: h\r\n\r\nHEAD /d HTTP/1.1\r\nHost: h\r\n\r\n"
pipelined_resp = b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
write("http", "h1-post-chunked", transcript(post + pipelined, chunked + pipelined_resp,
                                            [(0, len(post), 0, 1, 0), (1, len(chunked), 0, 5, 0)]))
write("http", "h1-gap-body", transcript(post, b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
                                        [(0, len(post) - 4, 4, 1, 0), (1, 19, 10, 3, 0)]))
connect = b"CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\n\r\n"
write("http", "h1-connect", transcript(connect, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01"))

# HTTP/2
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = 0, 1, 3, 4, 5, 6, 7, 8, 9
ES, EH, PADDED = 1, 4, 8


def frame(ty, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ty, flags]) + struct.pack(">I", stream) + payload


def lit(idx, value):
    """Literal with incremental indexing, indexed name (RFC 7541 6.2.1), plain value."""
    return bytes([0x40 | idx]) + bytes([len(value)]) + value


# RFC 7541 C.4.1: GET http www.example.com / with a Huffman-coded authority.
req1 = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
req2 = bytes.fromhex("828684be5886a8eb10649cbf")  # RFC 7541 C.4.2: the dynamic entry again + cache-control
resp = b"\x88" + lit(31, b"text/html") + lit(28, b"5")  # :status 200, content-type, content-length
settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 4096) + struct.pack(">HI", 4, 65535))
client = PREFACE + settings + frame(HEADERS, EH | ES, 1, req1) + frame(HEADERS, EH | ES, 3, req2)
server = (settings + frame(SETTINGS, 1, 0, b"") + frame(HEADERS, EH, 1, resp) + frame(DATA, ES, 1, b"hello")
          + frame(HEADERS, EH, 3, b"\x8d") + frame(DATA, ES | PADDED, 3, b"\x02ok\0\0"))
write("http", "h2-two-streams", transcript(client, server))
write("http", "h2-interleaved", transcript(client, server, [
    (0, len(PREFACE) + len(settings) + 9 + len(req1), 0, 1, 0), (1, len(settings) + 9, 0, 3, 0),
    (1, 9 + len(resp) + 14, 0, 2, 1), (0, 9 + len(req2), 0, 1, 0), (1, 100, 0, 1, 1)]))
cont = (PREFACE + settings + frame(HEADERS, 0, 1, req1[:6]) + frame(CONT, EH, 1, req1[6:])
        + frame(PING, 0, 0, bytes(8)) + frame(WINDOW, 0, 0, struct.pack(">I", 1000))
        + frame(HEADERS, EH, 3, bytes.fromhex("828684be")) + frame(RST, 0, 3, struct.pack(">I", 8)))
push = (settings + frame(PUSH, EH, 1, struct.pack(">I", 2) + bytes.fromhex("828684be"))
        + frame(HEADERS, EH | ES, 1, b"\x88") + frame(HEADERS, EH, 2, b"\x88") + frame(DATA, ES, 2, b"x")
        + frame(GOAWAY, 0, 0, struct.pack(">II", 3, 0) + b"bye"))
write("http", "h2-continuation-push", transcript(cont, push))
write("http", "h2-gap", transcript(client, server, [(0, 30, 40, 1, 0), (1, len(server), 0, 2, 0)]))

# ---------------------------------------------------------------------------------- URLs

for i, u in enumerate([
    "shop.test", "https://www.shop.test/a b?q=1#frag", "localhost:8080/x", "http://[fd77::3]:8443/",
    "bücher.test/ä?ö=ü", "HTTP://user:pw@Shop.Test.:80/%7e/../a/./b", "http:shop.test", "mailto:a@b.test",
    "10.77.0.2", "https://xn--bcher-kva.test/\u00a0", "  \thttps://0x7f.1/  ",
]):
    write("url", str(i), u.encode())

# ----------------------------------------------------------------------- ring-buffer records

KIND = dict(connect=1, tcp_state=2, sock_error=3, dns=4, tls_data=5, tls_handshake=6, tls_fd=7,
            fork=8, exec=9, exit=10, socket_data=11)


def header(kind, size, comm=b"curl"):
    return struct.pack("<IIQII16s", KIND[kind], size, 1_178_694_392_000, 4610, 4611, comm)


def sockaddr(ip4, port):
    return struct.pack("<HHI16s", 2, port, 0, bytes(ip4) + bytes(12))


def rec(kind, body, comm=b"curl"):
    return header(kind, 40 + len(body), comm) + body


write("events", "connect", rec("connect", struct.pack("<QQiiII", 1_178_694_000_000, 0xFFFF88812A1740C0, 5, -115, 1, 0)
                                + sockaddr([127, 0, 0, 1], 8443)))
write("events", "tcp_state", rec("tcp_state", struct.pack("<Qii", 0xFFFF88812A1740C0, 2, 1)
                                  + sockaddr([127, 0, 0, 1], 51056) + sockaddr([127, 0, 0, 1], 8443) + bytes(8)))
write("events", "sock_error", rec("sock_error", struct.pack("<iHH", 111, 6, 0)
                                   + sockaddr([127, 0, 0, 1], 0) + sockaddr([127, 0, 0, 1], 1)))
write("events", "dns", rec("dns", struct.pack("<iIIBBBB", 3, len(answer), len(answer), 1, 6, 0, 0)
                            + sockaddr([10, 77, 0, 1], 53) + answer.ljust(512, b"\0")))
line = b"GET /search?q=secret HTTP/1.1\r\nHost: shop.test\r\n\r\n"
write("events", "tls_data", rec("tls_data", struct.pack("<QQiIIBBBB", 1, 0x5599C1C08870, 5, len(line), len(line), 1, 0, 1, 0) + line))
write("events", "socket_data", rec("socket_data", struct.pack("<QQiIIBBBB", 1, 0, 5, 4096, len(ok), 0, 1, 5, 0) + ok))
write("events", "tls_handshake", rec("tls_handshake", struct.pack("<QqiBBBB", 0x5599C1C08870, 1, 5, 1, 6, 1, 0)))
write("events", "tls_fd", rec("tls_fd", struct.pack("<QiBBH", 0x5599C1C08870, 5, 1, 15, 0)))
write("events", "fork", rec("fork", struct.pack("<II", 4612, 0)))
write("events", "exec", rec("exec", b"/usr/bin/curl".ljust(128, b"\0")))
write("events", "exit", rec("exit", b""))

# ------------------------------------------------------------------------- HAR (arbitrary)
# Any bytes make page loads through `arbitrary`; these give a few of each size.
write("har", "ramp", bytes(range(256)) * 4)
write("har", "ones", b"\x01" * 512)
write("har", "mixed", bytes((i * 37 + 11) % 256 for i in range(2048)))

# ------------------------------------------------------------------------------- QUIC
# Records [kind][len u16][bytes]: 0/1 raw datagram from the client/server, 2/3 Initial
# plaintext (frames) from the client/server that the target seals with the Initial keys,
# 4 the original destination connection ID, 5 toggles QUIC version 2.

def qrec(kind, body):
    return bytes([kind]) + struct.pack(">H", len(body)) + body


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack(">H", 0x4000 | v)
    return struct.pack(">I", 0x80000000 | v)


def crypto(offset, data):
    return b"\x06" + varint(offset) + varint(len(data)) + data


# RFC 9001 A.2: the client's CRYPTO frame (a ClientHello for example.com with transport
# parameters), A.3: the server's ACK + CRYPTO (ServerHello), A.4: a Retry.
rfc_client_crypto = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c"
    "00000413011302010000c000000010000e00000b6578616d706c652e636f6dff01000100000a000800"
    "06001d0017001800100007000504616c706e000500050100000000003300260024001d00209370b2c9"
    "caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d0010000e"
    "0403050306030203080408050806002d00020101001c00024001003900320408ffffffffffffffff05"
    "048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806048000ffff")
rfc_server = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566dc543"
    "0b9a045a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d1081287c83"
    "4d5311bcf32bb9da1a002b00020304")
rfc_retry = bytes.fromhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")
server_id = bytes.fromhex("f067")
handshake_and_short = (b"\xe3\x00\x00\x00\x01" + bytes([2]) + server_id + b"\x00" + struct.pack(">H", 0x4000 | 40)
                       + bytes(40) + b"\x43" + server_id + bytes(30))
write("quic", "rfc-handshake", qrec(2, rfc_client_crypto + bytes(100)) + qrec(3, rfc_server)
      + qrec(0, handshake_and_short))
write("quic", "rfc-v2", qrec(5, b"") + qrec(2, rfc_client_crypto) + qrec(3, rfc_server))
write("quic", "retry", qrec(0, bytes.fromhex("c000000001088394c8f03e51570800") + bytes(40)) + qrec(1, rfc_retry)
      + qrec(4, server_id) + qrec(2, rfc_client_crypto))
vn = b"\xaa\x00\x00\x00\x00\x00\x08" + bytes.fromhex("8394c8f03e515708") + struct.pack(">II", 0x6B3343CF, 1)
write("quic", "version-negotiation", qrec(1, vn) + qrec(5, b"") + qrec(2, rfc_client_crypto))
# A ClientHello over two Initials, pieces in shuffled order (as Chromium sends them).
ch = rfc_client_crypto[4:]
write("quic", "split-hello", qrec(2, crypto(120, ch[120:]) + b"\x01") + qrec(2, crypto(0, ch[:120]) + bytes(10))
      + qrec(3, rfc_server))
# The server refuses: CONNECTION_CLOSE with CRYPTO_ERROR 0x178 (no_application_protocol).
close = b"\x1c" + varint(0x178) + varint(6) + varint(9) + b"no common"
write("quic", "server-close", qrec(2, rfc_client_crypto) + qrec(3, close))
# 0-RTT packets coalesced after the Initial's datagram.
zero_rtt = b"\xd3\x00\x00\x00\x01\x08" + bytes.fromhex("8394c8f03e515708") + b"\x00" + struct.pack(">H", 0x4000 | 60) + bytes(60)
write("quic", "zero-rtt", qrec(2, rfc_client_crypto) + qrec(0, zero_rtt + zero_rtt))

# ---------------------------------------------------------------------------------- HTTP/3
# Records of decrypted packet payloads (checks/h3.rs): qrec(0/1, frames) a client/server
# packet, qrec(2/3, [extra/16] + frames) one cut by the capture, qrec(4/5, b"") a gap.


def stream_frame(sid, offset, data, fin=False):
    return bytes([0x0E | fin]) + varint(sid) + varint(offset) + varint(len(data)) + data


def h3_frame(ty, payload):
    return varint(ty) + varint(len(payload)) + payload


def qint(flags, bits, v):
    mx = (1 << bits) - 1
    if v < mx:
        return bytes([flags | v])
    out, v = bytearray([flags | mx]), v - mx
    while v >= 128:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(out) + bytes([v])


def qstr(flags, bits, s):
    return qint(flags, bits, len(s)) + s


h3_settings = h3_frame(4, varint(1) + varint(4096) + varint(7) + varint(16) + varint(0x21) + varint(1))
client_setup = qrec(0, stream_frame(2, 0, b"\x00" + h3_settings) + stream_frame(6, 0, b"\x02"))
server_setup = qrec(1, stream_frame(3, 0, b"\x00" + h3_settings) + stream_frame(7, 0, b"\x02"))
# The client's encoder: capacity 4096, :authority=shop.test (static 0), user-agent=fuzz.
client_enc = qint(0x20, 5, 4096) + qint(0xC0, 6, 0) + qstr(0, 7, b"shop.test") + qstr(0x40, 5, b"user-agent") + qstr(0, 7, b"fuzz")
# RIC 2 (encoded 3), Base 2: GET, https, dynamic 1 (:authority), :path literal, dynamic 0.
request = qint(0, 8, 3) + qint(0, 7, 0) + qint(0xC0, 6, 17) + qint(0xC0, 6, 23) + qint(0x80, 6, 1) \
    + qint(0x50, 4, 1) + qstr(0, 7, b"/index.html") + qint(0x80, 6, 0)
server_enc = qint(0x20, 5, 4096) + qint(0xC0, 6, 44) + qstr(0, 7, b"text/html")
# RIC 1 (encoded 2), Base 0 (sign, delta 0): :status 200, post-base 0 (content-type).
response = qint(0, 8, 2) + qint(0x80, 7, 0) + qint(0xC0, 6, 25) + qint(0x10, 4, 0)
resp_stream = h3_frame(1, response) + h3_frame(0, b"<html>hello</html>")
early = qint(0, 8, 0) + qint(0, 7, 0) + qint(0x50, 4, 24) + qstr(0, 7, b"103") + qstr(0x20, 3, b"link") + qstr(0, 7, b"</a.css>")
trailers = qint(0, 8, 0) + qint(0, 7, 0) + qstr(0x20, 3, b"grpc-status") + qstr(0, 7, b"0")

write("h3", "get", client_setup + qrec(0, stream_frame(6, 1, client_enc) + stream_frame(0, 0, h3_frame(1, request), True))
      + server_setup + qrec(1, stream_frame(7, 1, server_enc) + stream_frame(0, 0, resp_stream, True))
      + qrec(1, b"\x1d" + varint(0x100) + varint(0)))
# The request before the encoder stream that it needs (blocked), the response out of order and
# retransmitted, interim headers and trailers, a duplicate packet.
full = h3_frame(1, early) + resp_stream + h3_frame(1, trailers)
write("h3", "blocked-reordered", client_setup + server_setup
      + qrec(0, stream_frame(0, 0, h3_frame(1, request), True)) + qrec(0, stream_frame(6, 1, client_enc)) + qrec(7, b"")
      + qrec(1, stream_frame(7, 1, server_enc) + stream_frame(0, 20, full[20:], True))
      + qrec(1, stream_frame(0, 0, full[:30])) + qrec(6, b""))
# A payload cut by the capture (16 * 4 bytes more), a gap, a missed packet, RESET_STREAM,
# STOP_SENDING, GOAWAY and a transport CONNECTION_CLOSE.
get4 = qint(0, 8, 0) + qint(0, 7, 0) + qint(0xC0, 6, 17) + qint(0xC0, 6, 23) + qint(0x50, 4, 1) + qstr(0, 7, b"/4")
body = h3_frame(1, qint(0, 8, 0) + qint(0, 7, 0) + qint(0xC0, 6, 25)) + h3_frame(0, bytes(100))
write("h3", "faults", client_setup + server_setup
      + qrec(0, stream_frame(0, 0, h3_frame(1, get4), True) + stream_frame(4, 0, h3_frame(1, get4), True)
             + stream_frame(8, 0, h3_frame(1, get4), True))
      + qrec(3, b"\x04" + b"\x0e" + varint(4) + varint(0) + varint(len(body) + 64) + body)
      + qrec(5, b"") + qrec(1, stream_frame(4, 50, body[50:], True))
      + qrec(1, b"\x04" + varint(8) + varint(0x10B) + varint(0)) + qrec(0, b"\x05" + varint(4) + varint(0x10C))
      + qrec(1, stream_frame(3, 1 + len(h3_settings), h3_frame(7, varint(4))))
      + qrec(0, b"\x1c" + varint(0xA) + varint(8) + varint(3) + b"bad"))
# Grease: a reserved stream type, reserved frame types, an ACK with ECN, PADDING, PING.
write("h3", "grease", client_setup + server_setup
      + qrec(0, b"\x00\x00\x01" + b"\x03" + varint(5) + b"\x00\x00\x01\x00\x00\x00" + stream_frame(10, 0, varint(0x21) + b"grease", True)
             + stream_frame(0, 0, h3_frame(0x21, b"x") + h3_frame(1, get4), True))
      + qrec(1, stream_frame(0, 0, h3_frame(0x21 + 0x1F, b"") + body, True)))
