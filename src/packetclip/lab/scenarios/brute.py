"""Brute force: hydra/patator/medusa dictionary attacks on SSH, FTP, Telnet and HTTP basic auth.

Each parallel task of the tool opens a connection, completes the protocol's preamble (SSH key exchange,
FTP/Telnet banners and prompts) and tries a few username/password pairs; the server answers each with a
failure after its failed-login delay (PAM's ~2 s for sshd and login, vsftpd's delay_failed_login), and
closes after its per-connection limit (MaxAuthTries, max_login_fails) or when the client gives up.
"""

from __future__ import annotations

import random

from packetclip.lab.packets import PROTO_TCP
from packetclip.lab.protocols import (FTP_BANNERS, TELNET_NEGOTIATION_CLIENT, TELNET_NEGOTIATION_SERVER,
                                      TELNET_SERVER_WILL, basic_auth, html_page, http_request, http_response,
                                      ssh_encrypted)
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, rtt, scale_duration
from packetclip.lab.scenarios.sessions import ssh_kex
from packetclip.lab.tooldata import PASSWORDS, USERNAMES
from packetclip.lab.wire import TcpConn

SERVICES = {"ssh": 22, "ftp": 21, "telnet": 23, "http-basic": 80}


class DictionaryAttack(Scenario):
    label = "Dictionary Attack"
    name = "dictionary"

    def plan(self, rng, net, start, max_duration):
        choices = []
        for h in [net.gateway, net.broker, net.nas, *net.devices]:
            for svc, port in SERVICES.items():
                if h.is_open(PROTO_TCP, port):
                    choices.append((svc, h))
        weights = [{"ssh": 45, "ftp": 30, "telnet": 15, "http-basic": 10}[s] * (2 if h.kind in ("nas", "broker") else 1)
                   for s, h in choices]
        service, victim = rng.choices(choices, weights)[0]
        tool = rng.choices(["hydra", "patator", "medusa", "ncrack"], [50, 25, 15, 10])[0]
        duration = scale_duration(rng, 60, 240, max_duration)
        per_conn = {"ssh": rng.choice([1, 3, 4, 5, 6]), "ftp": rng.choice([1, 1, 3]), "telnet": rng.choice([1, 3]),
                    "http-basic": rng.choice([1, 5, 20])}[service]
        params = {"service": service, "port": SERVICES[service], "tasks": rng.choice([1, 2, 4, 4, 8, 16]),
                  "attempts_per_conn": per_conn, "fail_delay_s": {"ssh": 2.0, "ftp": rng.choice([1.0, 3.0]),
                                                                  "telnet": 2.5, "http-basic": 0.0}[service],
                  "users": rng.sample(USERNAMES, rng.randint(1, 4)), "ssh_rsa_hostkey": rng.random() < 0.3,
                  "tool": tool}
        return Plan(self.label, f"{tool} {service}://", start, start + duration, params, [rng.choice(net.attackers)],
                    [victim])

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        eph = Ports(rng, a)
        creds = [(u, pw) for u in p["users"] for pw in rng.sample(PASSWORDS, len(PASSWORDS))]
        base, back = rtt(rng, a, v), rtt(rng, v, a)
        session = {"ssh": _ssh, "ftp": _ftp, "telnet": _telnet, "http-basic": _http_basic}[p["service"]]
        banner_ftp = rng.choice(FTP_BANNERS).replace("{ip}", ".".join(map(str, v.ip)))
        k = 0
        for task in range(p["tasks"]):
            t = ctx.start + task * rng.uniform(0.001, 0.05)
            while t < ctx.end:
                conn = TcpConn(ctx.wire, a, v, eph.next(), p["port"], rtt_s=base, rtt_c=back)
                t = conn.handshake(t)
                tries = []
                for _ in range(p["attempts_per_conn"]):
                    tries.append(creds[k % len(creds)])
                    k += 1
                t = session(conn, t, rng, tries, p, banner_ftp)
                t += rng.uniform(0.001, 0.05)


def _fail_delay(rng: random.Random, base: float) -> float:
    return base * rng.uniform(0.8, 1.25) if base else rng.uniform(0.0005, 0.004)


def _ssh(conn: TcpConn, t: float, rng: random.Random, tries, p, _banner) -> float:
    client = {"hydra": "SSH-2.0-libssh_0.9.6", "patator": "SSH-2.0-paramiko_2.11.0", "medusa": "SSH-2.0-MEDUSA_1.0",
              "ncrack": "SSH-2.0-OpenSSH_7.4p1"}[p["tool"]]
    t = ssh_kex(conn, t, rng, client_banner=client, rsa_hostkey=p["ssh_rsa_hostkey"])
    # "none" method probe, answered with the allowed methods
    conn.data(t, 0, ssh_encrypted(rng, 30 + len(tries[0][0])), ack="none")
    t += conn.jitter(1) + rng.uniform(0.0002, 0.002)
    conn.data(t, 1, ssh_encrypted(rng, 40), ack="delayed")
    t += conn.jitter(0) + rng.uniform(0.0001, 0.002)
    for user, pw in tries:
        conn.data(t, 0, ssh_encrypted(rng, 47 + len(user) + len(pw)), ack="delayed")
        t += _fail_delay(rng, p["fail_delay_s"])
        conn.data(t, 1, ssh_encrypted(rng, 40), ack="delayed")
        t += conn.jitter(0) + rng.uniform(0.0001, 0.003)
    if len(tries) >= 6:
        # MaxAuthTries reached: the server disconnects.
        conn.data(t, 1, ssh_encrypted(rng, 60), ack="none")
        return conn.close(t + 1e-4, 1)
    conn.data(t, 0, ssh_encrypted(rng, 44), ack="none")      # SSH_MSG_DISCONNECT
    return conn.close(t + rng.uniform(1e-5, 1e-4), 0)


def _ftp(conn: TcpConn, t: float, rng: random.Random, tries, p, banner) -> float:
    t += rng.uniform(0.0005, 0.01)
    conn.data(t, 1, (banner + "\r\n").encode(), ack="delayed")
    t += conn.jitter(0) + rng.uniform(0.0001, 0.003)
    for n, (user, pw) in enumerate(tries):
        t = conn.exchange(t, f"USER {user}\r\n".encode(), b"331 Please specify the password.\r\n",
                          server_time=rng.uniform(0.0001, 0.001))
        t += conn.jitter(0) + rng.uniform(0.0001, 0.002)
        conn.data(t, 0, f"PASS {pw}\r\n".encode(), ack="delayed")
        t += _fail_delay(rng, p["fail_delay_s"])
        conn.data(t, 1, b"530 Login incorrect.\r\n", ack="delayed")
        t += conn.jitter(0) + rng.uniform(0.0001, 0.002)
    if len(tries) >= 3:
        return conn.close(t, 1)                                # vsftpd max_login_fails
    t = conn.exchange(t, b"QUIT\r\n", b"221 Goodbye.\r\n", server_time=rng.uniform(0.0001, 0.001))
    return conn.close(t + rng.uniform(1e-5, 5e-4), 1)


def _telnet(conn: TcpConn, t: float, rng: random.Random, tries, p, _banner) -> float:
    t += rng.uniform(0.001, 0.02)
    conn.data(t, 1, TELNET_NEGOTIATION_SERVER, ack="none")
    t += conn.jitter(0)
    conn.data(t, 0, TELNET_NEGOTIATION_CLIENT, ack="none")
    t += conn.jitter(1)
    conn.data(t, 1, TELNET_SERVER_WILL + b"\r\n" + rng.choice([b"BusyBox v1.19.4", b"Ubuntu 18.04 LTS", b"IPCamera"])
              + b" login: ", ack="delayed")
    t += conn.jitter(0) + rng.uniform(0.001, 0.01)
    for user, pw in tries:
        conn.data(t, 0, (user + "\r\n").encode(), ack="none")
        t += conn.jitter(1)
        conn.data(t, 1, (user + "\r\nPassword: ").encode(), ack="delayed")
        t += conn.jitter(0) + rng.uniform(0.001, 0.01)
        conn.data(t, 0, (pw + "\r\n").encode(), ack="delayed")
        t += _fail_delay(rng, p["fail_delay_s"])
        conn.data(t, 1, b"\r\nLogin incorrect\r\nlogin: ", ack="delayed")
        t += conn.jitter(0) + rng.uniform(0.001, 0.01)
    return conn.close(t, 1 if len(tries) >= 3 else 0)


def _http_basic(conn: TcpConn, t: float, rng: random.Random, tries, p, _banner) -> float:
    host = ".".join(map(str, conn.hosts[1].ip))
    realm = rng.choice(["Login", "IP Camera", "Router Admin", "Restricted"])
    keep = len(tries) > 1
    for user, pw in tries:
        req = http_request("GET", "/", host, "Mozilla/4.0 (Hydra)", [("Authorization", basic_auth(user, pw))],
                           keep_alive=keep)
        body = html_page(rng, rng.randint(180, 480), "401 Unauthorized")
        resp = http_response(401, body, rng.choice(["lighttpd/1.4.59", "Boa/0.94.14rc21", "GoAhead-Webs"]),
                             extra=[("WWW-Authenticate", f'Basic realm="{realm}"')], keep_alive=keep)
        t = conn.exchange(t, req, resp, server_time=rng.uniform(0.0005, 0.01))
        t += rng.uniform(0.0005, 0.01)
    return conn.close(t, 1 if not keep else 0)


SCENARIOS = [DictionaryAttack()]
