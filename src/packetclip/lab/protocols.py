"""Application payloads with real wire formats: MQTT 3.1.1, CoAP, DNS, NTP, TLS 1.2/1.3, HTTP, SSH, FTP, Telnet.

Encrypted content (TLS application data, SSH after NEWKEYS) is random bytes of the size the real cipher
would produce; everything in clear text follows the protocol's encoding, so dissectors and the packet
encoder see the same structure as in real captures.
"""

from __future__ import annotations

import base64
import random
import struct

# ---------------------------------------------------------------------------------------------- MQTT


def _mqtt_len(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def _mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def mqtt_connect(client_id: str, keepalive: int = 60, username: str | None = None, password: str | None = None,
                 clean: bool = True) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username else 0) | (0x40 if password else 0)
    var = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = _mqtt_str(client_id)
    if username:
        body += _mqtt_str(username)
    if password:
        body += _mqtt_str(password)
    rest = var + body
    return bytes([0x10]) + _mqtt_len(len(rest)) + rest


def mqtt_connack(rc: int = 0, session_present: bool = False) -> bytes:
    return bytes([0x20, 2, 1 if session_present else 0, rc])


def mqtt_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False) -> bytes:
    rest = _mqtt_str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | (1 if retain else 0)]) + _mqtt_len(len(rest)) + rest


def mqtt_puback(packet_id: int) -> bytes:
    return bytes([0x40, 2]) + struct.pack("!H", packet_id)


def mqtt_subscribe(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    rest = struct.pack("!H", packet_id) + b"".join(_mqtt_str(t) + bytes([q]) for t, q in topics)
    return bytes([0x82]) + _mqtt_len(len(rest)) + rest


def mqtt_suback(packet_id: int, qos: list[int]) -> bytes:
    rest = struct.pack("!H", packet_id) + bytes(qos)
    return bytes([0x90]) + _mqtt_len(len(rest)) + rest


MQTT_PINGREQ = b"\xc0\x00"
MQTT_PINGRESP = b"\xd0\x00"
MQTT_DISCONNECT = b"\xe0\x00"

# ---------------------------------------------------------------------------------------------- CoAP

COAP_CON, COAP_NON, COAP_ACK, COAP_RST = 0, 1, 2, 3
COAP_GET = 0x01
COAP_CONTENT = 0x45   # 2.05
COAP_NOT_FOUND = 0x84


def _coap_option(delta: int, value: bytes) -> bytes:
    def nib(v: int) -> tuple[int, bytes]:
        if v < 13:
            return v, b""
        if v < 269:
            return 13, bytes([v - 13])
        return 14, struct.pack("!H", v - 269)

    d, dext = nib(delta)
    ln, lext = nib(len(value))
    return bytes([(d << 4) | ln]) + dext + lext + value


def coap_message(mtype: int, code: int, message_id: int, token: bytes, options: list[tuple[int, bytes]],
                 payload: bytes = b"") -> bytes:
    out = bytes([(1 << 6) | (mtype << 4) | len(token), code]) + struct.pack("!H", message_id) + token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        out += _coap_option(number - last, value)
        last = number
    if payload:
        out += b"\xff" + payload
    return out


def coap_uint(v: int) -> bytes:
    if v == 0:
        return b""
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


def coap_get(message_id: int, token: bytes, path: str, observe: bool = False, confirmable: bool = True) -> bytes:
    opts = [(11, seg.encode()) for seg in path.strip("/").split("/")]
    if observe:
        opts.append((6, b""))
    opts.append((17, coap_uint(50)))  # Accept: application/json
    return coap_message(COAP_CON if confirmable else COAP_NON, COAP_GET, message_id, token, opts)


def coap_content(mtype: int, message_id: int, token: bytes, payload: bytes, observe_seq: int | None = None) -> bytes:
    opts = [(12, coap_uint(50))]
    if observe_seq is not None:
        opts.append((6, coap_uint(observe_seq & 0xFFFFFF)))
    return coap_message(mtype, COAP_CONTENT, message_id, token, opts, payload)


# ----------------------------------------------------------------------------------------------- DNS

QTYPE = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}


def dns_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        b = label.encode()[:63]
        out += bytes([len(b)]) + b
    return out + b"\x00"


def dns_query(txid: int, name: str, qtype: str = "A", rd: bool = True, edns: bool = False) -> bytes:
    flags = 0x0100 if rd else 0
    out = struct.pack("!HHHHHH", txid, flags, 1, 0, 0, 1 if edns else 0) + dns_name(name)
    out += struct.pack("!HH", QTYPE[qtype], 1)
    if edns:
        out += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return out


def dns_response(query: bytes, answers: list[tuple[str, int, bytes]], rcode: int = 0, ra: bool = True,
                 authority_soa: bool = False, rng: random.Random | None = None) -> bytes:
    """Response to ``query``: answers are (type, ttl, rdata), owners compressed as real servers do.

    The first answer is owned by the question name; after a CNAME, later answers are owned by the CNAME's
    target (a compression pointer to its rdata). A query with an EDNS OPT record gets one back (RFC 6891).
    """
    txid, qflags = struct.unpack("!HH", query[:4])
    qarcount = struct.unpack("!H", query[10:12])[0]
    q_end = 12
    while query[q_end] != 0:
        q_end += query[q_end] + 1
    question = query[12: q_end + 5]
    flags = 0x8000 | (qflags & 0x0100) | (0x0080 if ra else 0) | rcode
    body = b""
    owner = 0x0C
    for rtype, ttl, rdata in answers:
        record = struct.pack("!H", 0xC000 | owner) + struct.pack("!HHIH", QTYPE[rtype], 1, ttl, len(rdata))
        if rtype == "CNAME":
            owner = 12 + len(question) + len(body) + len(record)     # where this rdata (the target) starts
        body += record + rdata
    ns = 0
    if authority_soa:
        r = rng or random.Random(0)
        soa = dns_name("ns1.registrar-servers.com") + dns_name("hostmaster.registrar-servers.com")
        soa += struct.pack("!IIIII", r.randint(2020000000, 2024123199), 43200, 3600, 604800, 3601)
        body += b"\xc0\x0c" + struct.pack("!HHIH", QTYPE["SOA"], 1, 3600, len(soa)) + soa
        ns = 1
    ar = 0
    if qarcount:
        body += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)       # OPT: UDP payload size 1232
        ar = 1
    return struct.pack("!HHHHHH", txid, flags, 1, len(answers), ns, ar) + question + body


# ----------------------------------------------------------------------------------------------- NTP

NTP_EPOCH_OFFSET = 2208988800


def _ntp_ts(unix: float) -> bytes:
    sec = int(unix) + NTP_EPOCH_OFFSET
    frac = int((unix - int(unix)) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack("!II", sec & 0xFFFFFFFF, frac)


def ntp_client(unix: float, poll: int = 6) -> bytes:
    return struct.pack("!BBbb", 0x23, 0, poll, -20) + b"\x00" * 12 + b"\x00" * 24 + _ntp_ts(unix)


def ntp_server(request: bytes, rx_unix: float, tx_unix: float, stratum: int = 2, ref_id: bytes = b"\xc0\xa8\x01\x01"
               ) -> bytes:
    origin = request[40:48]
    return (struct.pack("!BBbb", 0x24, stratum, request[2] if request[2] < 128 else 6, -23)
            + struct.pack("!II", 0x0000_0A3D, 0x0000_1E2B) + ref_id
            + _ntp_ts(rx_unix - 37.2) + origin + _ntp_ts(rx_unix) + _ntp_ts(tx_unix))


# ----------------------------------------------------------------------------------------------- TLS

_TLS13_SUITES = [0x1301, 0x1302, 0x1303]
_TLS12_SUITES = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def tls_record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def tls_client_hello(rng: random.Random, sni: str, tls13: bool = True, alpn: tuple[str, ...] = ("h2", "http/1.1"),
                     n_suites: int | None = None, pad_to: int | None = None) -> bytes:
    suites = (_TLS13_SUITES if tls13 else []) + _TLS12_SUITES[: n_suites or rng.randint(6, len(_TLS12_SUITES))]
    name = sni.encode()
    exts = _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    exts += _ext(23, b"") + _ext(65281, b"\x00")
    exts += _ext(10, struct.pack("!H", 8) + struct.pack("!HHHH", 0x001D, 0x0017, 0x0018, 0x0019))
    exts += _ext(11, b"\x01\x00")
    exts += _ext(35, b"")
    if alpn:
        proto = b"".join(bytes([len(a)]) + a.encode() for a in alpn)
        exts += _ext(16, struct.pack("!H", len(proto)) + proto)
    exts += _ext(5, b"\x01\x00\x00\x00\x00")
    sig = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    exts += _ext(13, struct.pack("!H", 2 * len(sig)) + b"".join(struct.pack("!H", s) for s in sig))
    if tls13:
        key = rng.randbytes(32)
        exts += _ext(51, struct.pack("!HHH", 36, 0x001D, 32) + key)
        exts += _ext(45, b"\x01\x01")
        exts += _ext(43, b"\x04\x03\x04\x03\x03")
    session_id = rng.randbytes(32) if tls13 or rng.random() < 0.5 else b""
    body = (b"\x03\x03" + rng.randbytes(32) + bytes([len(session_id)]) + session_id
            + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites) + b"\x01\x00")
    if pad_to:
        cur = len(body) + 2 + len(exts) + 4
        if cur < pad_to:
            exts += _ext(21, b"\x00" * max(0, pad_to - cur - 4))
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return tls_record(22, hs, 0x0301)


def tls_server_flight(rng: random.Random, tls13: bool, cert_bytes: int) -> bytes:
    """ServerHello and what follows it up to the point the client must answer."""
    sh_exts = (_ext(43, b"\x03\x04") + _ext(51, struct.pack("!HH", 0x001D, 32) + rng.randbytes(32))) if tls13 else \
        (_ext(65281, b"\x00") + _ext(11, b"\x01\x00") + _ext(23, b""))
    sh = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
          + struct.pack("!H", 0x1301 if tls13 else 0xC02F) + b"\x00" + struct.pack("!H", len(sh_exts)) + sh_exts)
    out = tls_record(22, b"\x02" + len(sh).to_bytes(3, "big") + sh)
    if tls13:
        out += tls_record(20, b"\x01")
        # EncryptedExtensions + Certificate + CertificateVerify + Finished, in one or two records.
        out += tls_record(23, rng.randbytes(cert_bytes + 16 + 1 + rng.randint(280, 340)))
        return out
    cert = rng.randbytes(cert_bytes)
    out += tls_record(22, b"\x0b" + (len(cert) + 3).to_bytes(3, "big") + len(cert).to_bytes(3, "big") + cert)
    ske = b"\x03\x00\x1d\x20" + rng.randbytes(32) + b"\x04\x01\x01\x00" + rng.randbytes(256)
    out += tls_record(22, b"\x0c" + len(ske).to_bytes(3, "big") + ske)
    out += tls_record(22, b"\x0e\x00\x00\x00")
    return out


def tls_client_finish(rng: random.Random, tls13: bool) -> bytes:
    if tls13:
        return tls_record(20, b"\x01") + tls_record(23, rng.randbytes(53))
    cke = b"\x10\x00\x00\x21\x20" + rng.randbytes(32)
    return tls_record(22, cke) + tls_record(20, b"\x01") + tls_record(22, rng.randbytes(40))


def tls_server_finish(rng: random.Random, tls13: bool) -> bytes:
    if tls13:
        # NewSessionTicket records
        return b"".join(tls_record(23, rng.randbytes(rng.randint(200, 260))) for _ in range(rng.randint(1, 2)))
    return tls_record(22, rng.randbytes(rng.randint(170, 230))) + tls_record(20, b"\x01") + tls_record(22, rng.randbytes(40))


def tls_app_data(rng: random.Random, plaintext_len: int, tls13: bool = True) -> bytes:
    """Application data, split into 16 KiB records as TLS does; AEAD tag (+ inner content type for 1.3)."""
    records = []
    remaining = max(1, plaintext_len)
    overhead = 17 if tls13 else 24   # 1.2 GCM: 8-byte explicit nonce + 16-byte tag
    while remaining > 0:
        n = min(remaining, 16384)
        remaining -= n
        records.append(tls_record(23, rng.randbytes(n + overhead)))
    return b"".join(records)


def tls_alert_close(rng: random.Random, tls13: bool = True) -> bytes:
    return tls_record(21, rng.randbytes(19 if tls13 else 26))


# ---------------------------------------------------------------------------------------------- HTTP

HTTP_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
                400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
                500: "Internal Server Error"}


def http_request(method: str, path: str, host: str, user_agent: str, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"", keep_alive: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}", "Accept: */*"]
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(status: int, body: bytes, server: str, content_type: str = "text/html",
                  extra: list[tuple[str, str]] | None = None, date: str = "Tue, 14 Mar 2023 10:21:07 GMT",
                  keep_alive: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTP_REASONS.get(status, 'OK')}", f"Date: {date}", f"Server: {server}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    for k, v in extra or []:
        lines.append(f"{k}: {v}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def html_page(rng: random.Random, size: int, title: str = "Index") -> bytes:
    head = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n".encode()
    words = [b"device", b"status", b"online", b"sensor", b"config", b"network", b"update", b"firmware", b"lorem",
             b"ipsum", b"value", b"<div>", b"</div>", b"<p>", b"</p>", b"\n"]
    body = bytearray()
    while len(body) < max(0, size - len(head) - 16):
        body += rng.choice(words) + b" "
    return head + bytes(body) + b"</body></html>\n"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----------------------------------------------------------------------------------------------- SSH

SSH_KEX = b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,diffie-hellman-group14-sha256,ext-info-c"
SSH_HOSTKEY = b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256,ssh-rsa"
SSH_CIPHERS = b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"
SSH_MACS = b"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,hmac-sha2-256,hmac-sha1"
SSH_COMP = b"none,zlib@openssh.com"


def _ssh_string(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


def ssh_packet(rng: random.Random, payload: bytes) -> bytes:
    """Binary packet protocol before encryption: length, padding length, payload, random padding (block 8)."""
    pad = 8 - ((5 + len(payload)) % 8)
    if pad < 4:
        pad += 8
    return struct.pack("!IB", 1 + len(payload) + pad, pad) + payload + rng.randbytes(pad)


def ssh_kexinit(rng: random.Random, server: bool, trim: int = 0) -> bytes:
    kex = SSH_KEX.replace(b",ext-info-c", b",kex-strict-s-v00@openssh.com") if server else SSH_KEX
    names = [kex, SSH_HOSTKEY[: len(SSH_HOSTKEY) - trim] if trim else SSH_HOSTKEY, SSH_CIPHERS, SSH_CIPHERS,
             SSH_MACS, SSH_MACS, SSH_COMP, SSH_COMP, b"", b""]
    payload = b"\x14" + rng.randbytes(16) + b"".join(_ssh_string(n) for n in names) + b"\x00" + b"\x00\x00\x00\x00"
    return ssh_packet(rng, payload)


def ssh_ecdh_init(rng: random.Random) -> bytes:
    return ssh_packet(rng, b"\x1e" + _ssh_string(rng.randbytes(32)))


def ssh_ecdh_reply_and_newkeys(rng: random.Random, rsa: bool = False) -> bytes:
    if rsa:
        hostkey = _ssh_string(b"ssh-rsa") + _ssh_string(b"\x01\x00\x01") + _ssh_string(rng.randbytes(385))
        sig = _ssh_string(b"rsa-sha2-512") + _ssh_string(rng.randbytes(384))
    else:
        hostkey = _ssh_string(b"ssh-ed25519") + _ssh_string(rng.randbytes(32))
        sig = _ssh_string(b"ssh-ed25519") + _ssh_string(rng.randbytes(64))
    reply = b"\x1f" + _ssh_string(hostkey) + _ssh_string(rng.randbytes(32)) + _ssh_string(sig)
    return ssh_packet(rng, reply) + ssh_packet(rng, b"\x15")


def ssh_newkeys(rng: random.Random) -> bytes:
    return ssh_packet(rng, b"\x15")


def ssh_encrypted(rng: random.Random, plaintext_len: int) -> bytes:
    """An encrypted packet (chacha20-poly1305: 4-byte length, padded body, 16-byte tag)."""
    body = 1 + plaintext_len
    pad = 8 - (body % 8)
    if pad < 4:
        pad += 8
    return rng.randbytes(4 + body + pad + 16)


SSH_SERVER_BANNERS = ["SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5", "SSH-2.0-OpenSSH_7.6p1 Ubuntu-4ubuntu0.3",
                      "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u1", "SSH-2.0-dropbear_2020.81",
                      "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2"]
SSH_CLIENT_BANNERS = ["SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1", "SSH-2.0-OpenSSH_9.6", "SSH-2.0-PuTTY_Release_0.78"]

# ------------------------------------------------------------------------------------------- FTP/Telnet

FTP_BANNERS = ["220 (vsFTPd 3.0.3)", "220 ProFTPD Server (Debian) [::ffff:{ip}]", "220 Welcome to NAS FTP service.",
               "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n220-You are user number 1 of 50 allowed.\r\n220 This is a private system - No anonymous login"]

TELNET_NEGOTIATION_SERVER = bytes([255, 253, 24, 255, 253, 32, 255, 253, 35, 255, 253, 39])
TELNET_NEGOTIATION_CLIENT = bytes([255, 251, 24, 255, 251, 32, 255, 251, 35, 255, 251, 39])
TELNET_SERVER_WILL = bytes([255, 251, 3, 255, 253, 1, 255, 251, 1, 255, 253, 31])
