"""Application-level exchanges shared by benign and attack scenarios (SSH key exchange, TLS handshakes)."""

from __future__ import annotations

import random

from packetclip.lab.protocols import (SSH_CLIENT_BANNERS, SSH_SERVER_BANNERS, ssh_ecdh_init, ssh_ecdh_reply_and_newkeys,
                                      ssh_encrypted, ssh_kexinit, ssh_newkeys, tls_client_finish, tls_client_hello,
                                      tls_server_finish, tls_server_flight)
from packetclip.lab.wire import TcpConn


def ssh_kex(conn: TcpConn, t: float, rng: random.Random, *, client_banner: str | None = None,
            server_banner: str | None = None, rsa_hostkey: bool = False, kex_trim: int = 0) -> float:
    """Banners, KEXINITs, ECDH, NEWKEYS and the ssh-userauth service request; returns when auth can start."""
    client_banner = client_banner or rng.choice(SSH_CLIENT_BANNERS)
    server_banner = server_banner or rng.choice(SSH_SERVER_BANNERS)
    # Both sides send their identification string right after connect; the server's comes after its fork.
    conn.data(t + rng.uniform(50e-6, 400e-6), 0, (client_banner + "\r\n").encode(), ack="none")
    ts = t + rng.uniform(0.002, 0.012)
    conn.data(ts, 1, (server_banner + "\r\n").encode(), ack="none")
    # Each side sends KEXINIT as soon as it has the peer's banner; emit them in time order so that
    # every segment acknowledges only bytes already sent.
    tc = ts + conn.jitter(0)
    tk = ts + rng.uniform(0.0002, 0.002)
    if tk <= tc:
        end_s = conn.data(tk, 1, ssh_kexinit(rng, server=True), ack="none")
        end_c = conn.data(max(tc, end_s + 1e-6), 0, ssh_kexinit(rng, server=False, trim=kex_trim), ack="none")
    else:
        end_c = conn.data(tc, 0, ssh_kexinit(rng, server=False, trim=kex_trim), ack="none")
        end_s = conn.data(max(tk, end_c + 1e-6), 1, ssh_kexinit(rng, server=True), ack="none")
    t = max(end_s, end_c) + conn.jitter(0)
    conn.data(t, 0, ssh_ecdh_init(rng), ack="none")
    t += conn.jitter(1) + rng.uniform(0.002, 0.008)
    t = conn.data(t, 1, ssh_ecdh_reply_and_newkeys(rng, rsa=rsa_hostkey), ack="none")
    t += conn.jitter(0) + rng.uniform(0.0005, 0.003)
    conn.data(t, 0, ssh_newkeys(rng), ack="none")
    t += rng.uniform(30e-6, 200e-6)
    conn.data(t, 0, ssh_encrypted(rng, 17), ack="none")         # SERVICE_REQUEST ssh-userauth
    t += conn.jitter(1) + rng.uniform(0.0001, 0.001)
    conn.data(t, 1, ssh_encrypted(rng, 17), ack="delayed")      # SERVICE_ACCEPT
    return t + conn.jitter(0)


def tls_handshake(conn: TcpConn, t: float, rng: random.Random, sni: str, *, tls13: bool, cert_bytes: int,
                  server_time: float = 0.002) -> float:
    """ClientHello → server flight → client finish (→ tickets); returns when application data may flow."""
    t = conn.data(t, 0, tls_client_hello(rng, sni, tls13=tls13, pad_to=rng.choice([None, None, 512])), ack="none")
    t += conn.jitter(1) + server_time
    t = conn.data(t, 1, tls_server_flight(rng, tls13, cert_bytes), ack="none")
    t += conn.jitter(0) + rng.uniform(0.0005, 0.004)
    t = conn.data(t, 0, tls_client_finish(rng, tls13), ack="none")
    t += conn.jitter(1) + rng.uniform(0.0002, 0.002)
    t = conn.data(t, 1, tls_server_finish(rng, tls13), ack="delayed")
    return t + rng.uniform(0.0001, 0.002)
