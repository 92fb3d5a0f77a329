"""Slow-header DoS: slowloris.py, slowloris.pl and slowhttptest -H against a web server that runs out of room.

The attack works by exhausting the server's connection slots, so the model simulates both sides as events
in time order:

* **The tools**, as their code behaves with default options. slowloris.py (gkbrk): one thread, 150 sockets,
  blocking ``connect`` with a 4 s timeout (the creation loop stops at the first failure), the request line
  then the User-Agent and Accept-language lines (two sends that Nagle joins), ``X-a: <1..5000>`` to every
  socket every 15 s, dead sockets (send error) dropped and recreated. slowloris.pl (RSnake): threads of 50
  sockets, 1000 in all, 5 s connect timeout, the whole partial request (``Content-Length: 42``, MSIE 7 UA) in
  one segment, ``X-a: b`` right after building the sockets and then every 100 s. slowhttptest -H: 50
  non-blocking connections opened at 50/s (the kernel retries SYNs), ``GET / HTTP/1.1`` with ``Host: h:80``
  and one of its own User-Agents, then ``X-<1..31>: <1..31>`` to every socket at the same clock tick every
  10 s; it reads, so it closes a socket (FIN) when the server does, and never reopens one.
* **The server**: a worker/connection limit (Apache MaxRequestWorkers 150, nginx worker_connections,
  lighttpd max-connections, uhttpd on the router, an ESP-IDF httpd on lwIP devices) and the kernel's accept
  queue (listen backlog capped by somaxconn: 128 on 4.x kernels). Accepted connections get the server's
  header timeout: Apache mod_reqtimeout (20 s + 1 s per 500 bytes, up to 40 s; sends its 408 page), Apache
  without it (300 s idle), nginx (60 s, silent close), lighttpd / uhttpd / esp-httpd (idle timeouts, silent
  close). Connections beyond the workers wait in the accept queue: the kernel completes their handshake and
  ACKs their data, nothing else. With the accept queue full, a new SYN is dropped (the client retries after
  1, 2, 4 s ...) — except that 4.x kernels still admit ~1-2 "young" SYNs a second: those get a SYN/ACK but
  their ACK is dropped, so the client believes it is connected and retransmits its request with exponential
  back-off until the server, ~60-120 s later, has forgotten the connection and answers with a RST.

A worker freed by a timeout takes the next queued connection. The tools' own sockets see the server's
FIN/RST: the scripts notice on their next send (data, answered by a RST) and reconnect; slowhttptest closes.
At the end (Ctrl-C, or slowhttptest's -l), the kernel closes every socket with a FIN.
"""

from __future__ import annotations

import heapq
import itertools
import random
import string
from collections import deque
from dataclasses import dataclass

from packetclip.lab.network import Host
from packetclip.lab.packets import ACK, FIN, PSH, RST
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, rtt, scale_duration
from packetclip.lab.tooldata import USER_AGENTS
from packetclip.lab.wire import TcpConn

_SLOW_UA_PL = ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; Trident/4.0; .NET CLR 1.1.4322; .NET CLR 2.0.503l3; "
               ".NET CLR 3.0.4506.2152; .NET CLR 3.5.30729; MSOffice 12)")
# slowhttptest's built-in User-Agents (src/slowhttptest.cc)
_SLOWHTTPTEST_UA = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7) AppleWebKit/534.48.3 (KHTML, like Gecko) Version/5.1 Safari/534.48.3",
    "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_8; en-us) AppleWebKit/533.21.1 (KHTML, like Gecko) Version/5.0.5 "
    "Safari/533.21.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.7; rv:5.0.1) Gecko/20100101 Firefox/5.0.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_0) AppleWebKit/534.30 (KHTML, like Gecko) Chrome/12.0.742.122 "
    "Safari/534.30",
    "Opera/9.80 (Macintosh; Intel Mac OS X 10.7.0; U; Edition MacAppStore; en) Presto/2.9.168 Version/11.50",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2)",
]
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ServerSpec:
    """How one web server treats connections: slots, accept queue, header timeout, what it sends then."""

    workers: tuple[int, ...]          # choices for the connection/worker limit
    backlog_old: int                  # accept queue on 4.x-era kernels (somaxconn 128)
    backlog_new: int                  # accept queue on >= 5.4 kernels (somaxconn 4096)
    timeout: str                      # "total" (from accept) or "idle" (since the last data)
    seconds: float
    on_timeout: str                   # "408" (Apache's 408 page, then FIN) or "close" (FIN)
    max_seconds: float = 0.0          # mod_reqtimeout: the limit grows by 1 s per 500 bytes up to this


SERVERS = {
    "apache-reqtimeout": ServerSpec((150, 150, 150, 256, 400), 128, 511, "total", 20.0, "408", 40.0),
    "apache-legacy": ServerSpec((150, 150, 256), 128, 511, "idle", 300.0, "408"),
    "nginx": ServerSpec((768, 1536, 3072), 128, 511, "total", 60.0, "close"),
    "lighttpd": ServerSpec((341,), 128, 1024, "idle", 60.0, "close"),
    "uhttpd": ServerSpec((100,), 128, 128, "idle", 30.0, "close"),
    "esp-httpd": ServerSpec((4, 7), 5, 5, "idle", 5.0, "close"),
}

_APACHE_408 = ('<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>408 Request Timeout</title>\n'
               '</head><body>\n<h1>Request Timeout</h1>\n<p>Server timeout waiting for the HTTP request from the '
               'client.</p>\n<hr>\n<address>{server} Server at {host} Port 80</address>\n</body></html>\n')


def server_kind(rng: random.Random, victim: Host) -> str:
    """The web server a victim of this kind runs."""
    if victim.kind == "router":
        return "uhttpd"
    if victim.stack.name == "lwip":
        return "esp-httpd"
    if victim.kind == "ip-camera":
        return rng.choice(["lighttpd", "lighttpd", "uhttpd"])
    return rng.choices(["apache-reqtimeout", "apache-legacy", "nginx", "lighttpd"], [35, 20, 30, 15])[0]


@dataclass(eq=False)
class _Sock:
    """One attack connection, client and server state."""

    conn: TcpConn
    state: str = "connecting"   # connecting / limbo / queued / active / closed / reset / gone
    isn_c: int = 0
    isn_s: int = 0
    accepted_at: float = 0.0
    last_rx: float = 0.0
    rx_bytes: int = 0
    held: bytes = b""           # written by the tool while its first data segment is unacknowledged
    seg: tuple[int, bytes] | None = None   # (seq, payload) retransmitted while in limbo
    rto: float = 0.2
    expiry: float = 0.0
    token: int = 0              # invalidates old timeout events
    requested: bool = False


class _Sim:
    """A heap of (time, order, callback) events processed in time order."""

    def __init__(self) -> None:
        self.heap: list = []
        self.order = itertools.count()

    def at(self, t: float, fn) -> None:
        heapq.heappush(self.heap, (t, next(self.order), fn))

    def run(self, until: float) -> None:
        while self.heap and self.heap[0][0] <= until:
            t, _, fn = heapq.heappop(self.heap)
            fn(t)


class _Server:
    def __init__(self, ctx: Ctx, kind: str, workers: int, old_kernel: bool, sim: _Sim, a_rtt: float, v_rtt: float,
                 tool_reads: bool):
        self.ctx, self.rng, self.sim = ctx, ctx.rng, sim
        self.kind, self.spec = kind, SERVERS[kind]
        self.workers = workers
        self.old_kernel = old_kernel
        self.backlog = self.spec.backlog_old if old_kernel else self.spec.backlog_new
        self.active: set[_Sock] = set()
        self.queue: deque[_Sock] = deque()
        self.limbo: set[_Sock] = set()
        self.young: deque[float] = deque()
        self.a_rtt, self.v_rtt = a_rtt, v_rtt      # answer delays: server's and client's
        self.tool_reads = tool_reads
        self.server_name = {"apache-reqtimeout": "Apache/2.4.18 (Ubuntu)", "apache-legacy": "Apache/2.4.29 (Ubuntu)"
                            }.get(kind, "nginx")
        victim = ctx.plan.victims[0]
        self.host = ".".join(map(str, victim.ip))

    def d_server(self) -> float:
        return self.a_rtt * (0.85 + 0.3 * self.rng.random())

    def d_client(self) -> float:
        return self.v_rtt * (0.85 + 0.3 * self.rng.random())

    # -- admission ---------------------------------------------------------------------------------------

    def queue_full(self) -> bool:
        return len(self.queue) > self.backlog           # Linux: sk_ack_backlog > sk_max_ack_backlog

    def syn_admitted(self, t: float) -> bool:
        if not self.queue_full():
            return True
        if not self.old_kernel:
            return False
        # 4.x: a SYN is dropped only when the accept queue is full *and* more than one young request waits
        while self.young and t - self.young[0] > 1.0:
            self.young.popleft()
        if len(self.young) <= 1:
            self.young.append(t)
            return True
        return False

    def handshake_done(self, t: float, s: _Sock) -> None:
        """The client's ACK reaches the server at ``t``."""
        if self.queue_full():
            s.state = "limbo"
            self.limbo.add(s)
            s.expiry = t + self.rng.uniform(60.0, 120.0)     # request timer / SYN-cookie age runs out
            if len(self.limbo) * 2 < self.backlog:
                # a quiet SYN queue retransmits the SYN/ACK (1, 3, 7, 15, 31 s); a crowded one drops old
                # requests after fewer tries (Linux halves their threshold) or answers with cookies
                for delay in (1.0, 3.0, 7.0, 15.0, 31.0):
                    self.sim.at(t + delay, lambda tt, s=s: self._synack_again(tt, s))
            else:
                self.sim.at(t + 1.0, lambda tt, s=s: self._synack_again(tt, s))
            return
        if len(self.active) < self.workers:
            self._accept(t, s)
        else:
            s.state = "queued"
            self.queue.append(s)

    def _synack_again(self, t: float, s: _Sock) -> None:
        if s.state != "limbo" or t >= s.expiry or t >= self.ctx.end:
            return
        c = s.conn
        sent = c.seq[1]
        c.seq[1] = s.isn_s
        rcv = c.rcv[1]
        c.rcv[1] = (s.isn_c + 1) & 0xFFFFFFFF
        c.synack(t)
        c.seq[1], c.rcv[1] = sent, rcv
        c.send(t + self.d_client(), 0, ACK)               # the client's duplicate ACK (dropped again)

    def _accept(self, t: float, s: _Sock) -> None:
        s.state = "active"
        s.accepted_at = t
        s.last_rx = max(s.last_rx, t)
        self.active.add(s)
        self._arm(s, t)

    def _arm(self, s: _Sock, t: float) -> None:
        s.token += 1
        token = s.token
        self.sim.at(self._deadline(s), lambda tt, s=s, token=token: self._check(tt, s, token))

    def _deadline(self, s: _Sock) -> float:
        spec = self.spec
        if spec.timeout == "idle":
            return s.last_rx + spec.seconds
        limit = spec.seconds
        if spec.max_seconds:
            limit = min(spec.max_seconds, spec.seconds + s.rx_bytes / 500.0)
        return s.accepted_at + limit

    def _check(self, t: float, s: _Sock, token: int) -> None:
        if s.state != "active" or token != s.token or t >= self.ctx.end:
            return
        if self._deadline(s) > t + 1e-9:
            self._arm(s, t)
            return
        self._time_out(t, s)

    def _time_out(self, t: float, s: _Sock) -> None:
        c = s.conn
        if self.spec.on_timeout == "408":
            body = _APACHE_408.format(server=self.server_name, host=self.host).encode()
            head = ("HTTP/1.1 408 Request Timeout\r\nDate: Wed, 05 Jul 2017 09:" f"{int(t) % 60:02d}:{int(t * 7) % 60:02d} GMT"
                    f"\r\nServer: {self.server_name}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                    "Content-Type: text/html; charset=iso-8859-1\r\n\r\n").encode()
            c.data(t, 1, head + body, ack="none")
            c.send(t + 2e-5, 1, FIN | ACK)
        else:
            c.send(t, 1, FIN | ACK)
        tc = t + self.d_client()
        c.send(tc, 0, ACK)
        self.active.discard(s)
        if self.tool_reads:
            # slowhttptest reads EOF and closes its side
            c.send(tc + self.rng.uniform(50e-6, 2e-3), 0, FIN | ACK)
            c.send(tc + self.rng.uniform(2e-3, 3e-3) + self.d_server(), 1, ACK)
            c.closed = True
            s.state = "gone"
        else:
            s.state = "closed"
        self._free_slot(t)

    def _free_slot(self, t: float) -> None:
        while self.queue and len(self.active) < self.workers:
            self._accept(t + self.rng.uniform(20e-6, 300e-6), self.queue.popleft())

    # -- data from the client ----------------------------------------------------------------------------

    def client_sends(self, t: float, s: _Sock, payload: bytes) -> bool:
        """The tool writes ``payload``; returns False when the write fails (the socket is dead)."""
        c = s.conn
        if s.state in ("reset", "gone"):
            s.state = "gone"
            return False
        if s.state == "closed":
            # the server closed: the data goes out and the server's kernel answers with a RST
            c.data(t, 0, payload, ack="none")
            c.send(t + self.d_server(), 1, RST, window=0)
            c.closed = True
            s.state = "reset"
            return True
        if s.state == "limbo":
            if s.seg is None:
                s.seg = (c.seq[0], payload)
                c.send(t, 0, ACK | PSH, payload)
                c.rcv[1] = (s.isn_c + 1) & 0xFFFFFFFF       # the server never got it
                s.rto = 0.2 + 2 * self.v_rtt
                self.sim.at(t + s.rto, lambda tt, s=s: self._retransmit(tt, s))
            else:
                s.held += payload
            return True
        c.data(t, 0, payload, ack="delayed")
        s.rx_bytes += len(payload)
        s.last_rx = t
        return True

    def _retransmit(self, t: float, s: _Sock) -> None:
        if s.state != "limbo" or t >= self.ctx.end:
            return
        c = s.conn
        seq, payload = s.seg
        if t >= s.expiry:
            # the server has forgotten the connection: RST to the segment's ACK number
            c.seq[0] = seq
            c.send(t, 0, ACK | PSH, payload)
            c.rcv[1] = (s.isn_c + 1) & 0xFFFFFFFF
            self.ctx.wire.tcp(t + self.d_server(), c.hosts[1], c.hosts[0], c.ports[1][0], c.ports[1][1],
                              (s.isn_s + 1) & 0xFFFFFFFF, 0, RST, 0, df=True, ident=0)
            self.limbo.discard(s)
            c.closed = True
            s.state = "reset"
            return
        c.seq[0] = seq
        c.send(t, 0, ACK | PSH, payload)
        if not self.queue_full():
            # room again: the retransmission completes the handshake, the kernel ACKs the data
            c.rcv[1] = c.seq[0]
            self.limbo.discard(s)
            ta = t + self.d_server()
            c.send(ta, 1, ACK)
            s.rx_bytes += len(payload)
            s.last_rx = t
            self.handshake_done(t, s)
            if s.held:
                held, s.held = s.held, b""
                self.client_sends(ta + self.d_client(), s, held)
            return
        c.rcv[1] = (s.isn_c + 1) & 0xFFFFFFFF
        s.rto = min(120.0, s.rto * 2)
        self.sim.at(t + s.rto, lambda tt, s=s: self._retransmit(tt, s))

    def shutdown(self, t: float, socks: list[_Sock]) -> float:
        """The tool exits: its kernel sends FIN on every connected socket."""
        rng = self.rng
        for s in socks:
            c = s.conn
            if s.state == "active":
                c.close(t, 0)
            elif s.state in ("queued", "closed"):
                c.send(t, 0, FIN | ACK)
                c.send(t + self.d_server(), 1, ACK)
                c.closed = True
            t += rng.uniform(5e-6, 60e-6)
            s.state = "gone"
        return t


class Slowloris(Scenario):
    """Slow-header DoS (see the module docstring): tool defaults plus the server running out of room."""

    label = "Slowloris"
    name = "slowloris"

    def plan(self, rng, net, start, max_duration):
        victim = rng.choice(net.web_servers())
        duration = scale_duration(rng, 60, 300, max_duration)
        tool = rng.choices(["slowloris.py", "slowloris.pl", "slowhttptest -H"], [45, 30, 25])[0]
        default = rng.random() < 0.65          # most runs keep the tool's defaults
        if tool == "slowloris.py":
            sockets = 150 if default else rng.choice([50, 100, 200, 300, 500])
            interval = 15.0 if default else float(rng.choice([5, 10, 20, 30]))
        elif tool == "slowloris.pl":
            sockets = 1000 if default else rng.choice([100, 200, 500])
            interval = 100.0 if default else float(rng.choice([30, 60, 90, 200]))
        else:
            sockets = 50 if default else rng.choice([100, 200, 500, 1000])
            interval = 10.0 if default else float(rng.choice([5, 15, 30, 60]))
        kind = server_kind(rng, victim)
        params = {"tool": tool, "sockets": sockets, "interval_s": interval, "server": kind,
                  "workers": rng.choice(SERVERS[kind].workers), "port": 80,
                  "rate_per_s": 50 if default or tool != "slowhttptest -H" else rng.choice([100, 200])}
        return Plan(self.label, f"{tool} ({sockets} sockets, every {interval:g} s) vs {kind}", start,
                    start + duration, params, [rng.choice(net.attackers)], [victim])

    # -- the tools' requests -----------------------------------------------------------------------------

    @staticmethod
    def _request(rng, tool: str, host: str, ua: str) -> list[bytes]:
        """The partial request as the tool's send() calls hand it to TCP (one element per send)."""
        if tool == "slowloris.py":
            return [f"GET /?{rng.randint(0, 2000)} HTTP/1.1\r\n".encode(),
                    f"User-Agent: {rng.choice(USER_AGENTS)}\r\nAccept-language: en-US,en,q=0.5\r\n".encode()]
        if tool == "slowloris.pl":
            return [f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {_SLOW_UA_PL}\r\nContent-Length: 42\r\n".encode()]
        return [f"GET / HTTP/1.1\r\nHost: {host}:80\r\nUser-Agent: {ua}\r\n".encode()]

    @staticmethod
    def _header(rng, tool: str) -> bytes:
        if tool == "slowloris.py":
            return f"X-a: {rng.randint(1, 5000)}\r\n".encode()
        if tool == "slowloris.pl":
            return b"X-a: b\r\n"
        name = "".join(rng.choice(_ALNUM) for _ in range(rng.randint(1, 31)))
        value = "".join(rng.choice(_ALNUM) for _ in range(rng.randint(1, 31)))
        return f"X-{name}: {value}\r\n".encode()

    def run(self, ctx: Ctx) -> None:
        rng, w = ctx.rng, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        tool = p["tool"]
        sim = _Sim()
        a_rtt, v_rtt = rtt(rng, a, v), rtt(rng, v, a)
        server = _Server(ctx, p["server"], p["workers"], v.stack.name in ("linux4", "openwrt", "embedded", "lwip"),
                         sim, a_rtt, v_rtt, tool_reads=tool == "slowhttptest -H")
        eph = Ports(rng, a)
        host = ".".join(map(str, v.ip))
        ua = rng.choice(_SLOWHTTPTEST_UA)
        all_socks: list[_Sock] = []

        def new_sock() -> _Sock:
            conn = TcpConn(w, a, v, eph.next(), p["port"], rtt_s=a_rtt, rtt_c=v_rtt)
            s = _Sock(conn, isn_c=conn.seq[0])
            all_socks.append(s)
            return s

        def connect(s: _Sock, t0: float, timeout: float, done) -> None:
            """Non-blocking connect: SYN (retried by the kernel) until SYN/ACK or ``timeout``; ``done(t, ok)``."""
            c = s.conn

            def attempt(ts: float, k: int) -> None:
                c.seq[0] = s.isn_c
                c.syn(ts)
                if server.syn_admitted(ts):
                    tsa = ts + server.d_server()
                    s.isn_s = c.seq[1]
                    c.synack(tsa)
                    tack = tsa + server.d_client()
                    c.send(tack, 0, ACK)
                    sim.at(tack, lambda tt: server.handshake_done(tt, s))
                    sim.at(tack + 1e-6, lambda tt: done(tt, True))
                    return
                nxt = ts + (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)[min(k, 6)]
                if nxt - t0 < timeout and k < 6:
                    sim.at(nxt, lambda tt: attempt(tt, k + 1))
                else:
                    s.state = "gone"          # connect() gave up; the kernel drops the half-open socket
                    sim.at(t0 + timeout, lambda tt: done(tt, False))

            attempt(t0, 0)

        def send_request(s: _Sock, t: float) -> float:
            parts = self._request(rng, tool, host, ua)
            for k, part in enumerate(parts):
                if k:
                    t += server.d_server()      # Nagle: the rest waits for the first segment's ACK
                server.client_sends(t, s, part)
            s.requested = True
            return t

        # -- tool processes, as generators driven by the event loop -----------------------------------------
        # yield ("sleep", seconds) -> now;  yield ("connect", sock, timeout) -> (now, ok)

        def drive(gen, t: float, value=None) -> None:
            try:
                cmd = gen.send(value)
            except StopIteration:
                return
            if cmd[0] == "sleep":
                sim.at(t + cmd[1], lambda tt: drive(gen, tt, tt))
            else:
                _, s, timeout = cmd
                connect(s, t, timeout, lambda tt, ok: drive(gen, tt, (tt, ok)))

        def script(n: int, interval: float, timeout: float, stop_on_failure: bool):
            """slowloris.py (one thread) and one slowloris.pl thread: (re)build sockets, one header to each, sleep."""
            socks: list[_Sock] = []
            now = yield ("sleep", 0.0)
            while True:
                missing = n - len(socks)
                for _ in range(missing):
                    s = new_sock()
                    now, ok = yield ("connect", s, timeout)
                    if not ok:
                        if stop_on_failure:
                            break
                        continue
                    send_request(s, now + rng.uniform(20e-6, 200e-6))
                    socks.append(s)
                    now = yield ("sleep", rng.uniform(50e-6, 400e-6))
                for s in list(socks):
                    if not server.client_sends(now, s, self._header(rng, tool)):
                        socks.remove(s)          # the write failed: recreated next round
                        continue
                    now = yield ("sleep", rng.uniform(15e-6, 200e-6))
                now = yield ("sleep", interval)

        def slowhttptest(n: int, interval: float, rate: float, t0: float):
            socks: list[_Sock] = []
            now = yield ("sleep", 0.0)
            for _ in range(n):
                s = new_sock()
                socks.append(s)
                connect(s, now, 127.0, lambda tt, ok, s=s: (send_request(s, tt + rng.uniform(1e-4, 2e-3)) if ok
                                                            else None))
                now = yield ("sleep", (1.0 / rate) * rng.uniform(0.97, 1.05))
            tick = 1
            while True:
                now = yield ("sleep", max(0.0, t0 + tick * interval + rng.uniform(0.0, 0.02) - now))
                for s in socks:
                    if s.requested and s.state in ("active", "queued", "limbo"):
                        server.client_sends(now, s, self._header(rng, tool))
                        now += rng.uniform(5e-6, 60e-6)
                tick += 1

        start = ctx.start
        if tool == "slowloris.py":
            drive(script(p["sockets"], p["interval_s"], 4.0, True), start)
        elif tool == "slowloris.pl":
            for k in range(0, p["sockets"], 50):
                gen = script(min(50, p["sockets"] - k), p["interval_s"], 5.0, False)
                drive(gen, start + k / 50 * rng.uniform(0.002, 0.02))
        else:
            drive(slowhttptest(p["sockets"], p["interval_s"], p["rate_per_s"], start), start)
        sim.run(ctx.end)
        server.shutdown(max(ctx.end, start), all_socks)


__all__ = ["Slowloris", "SERVERS", "server_kind"]
