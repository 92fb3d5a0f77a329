"""Reconnaissance: nmap port scans, nmap OS detection, nikto-style vulnerability scanning.

The models follow what the tools put on the wire:

- nmap raw scans (-sS/-sF/-sX/-sN/-sA) send crafted probes from one source port per try (retransmissions
  use the next port), TTL drawn in [37, 59], window 1024 (sometimes 2048-4096), only an MSS option on
  SYNs; open ports answer SYN/ACK and the attacker's kernel resets them, closed ports answer RST/ACK,
  firewalled hosts answer nothing and nmap retransmits. Connect scans (-sT) use the OS's own SYN
  (full options) and close open ports with RST. Ports come in nmap's order (shuffled, popular first);
  timing templates set parallelism, inter-probe gaps and retransmission timeouts.
- nmap -O: the 6 SEQ probes 100 ms apart, 2 ICMP echo (IE), ECN, T2-T7, U1, with the exact windows,
  flags and TCP options of nmap's osscan2, after the port scan that finds an open and a closed port.
- nikto: one client, many short HTTP requests to known paths (User-Agent with the test id), mostly 404s,
  one connection per request or keep-alive batches.
"""

from __future__ import annotations

import random

from packetclip.lab.network import Host, Network
from packetclip.lab.packets import (ACK, CWR, ECE, FIN, OPT_EOL, OPT_NOP, OPT_SACK_PERM, PROTO_TCP, PROTO_UDP, PSH,
                                    RST, SYN, URG, ipv4, opt_mss, opt_timestamp, opt_wscale, udp_datagram)
from packetclip.lab.protocols import html_page, http_request, http_response
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, rtt, scale_duration
from packetclip.lab.tooldata import (NMAP_TOP1000_TCP, NMAP_TOP_UDP, NMAP_UDP_PAYLOADS, nikto_paths,
                                     nmap_port_order)
from packetclip.lab.wire import TcpConn

# nmap timing templates: parallel probes per round, gap between probes of a round, wait between rounds,
# retransmission timeout, retries for unanswered probes.
TIMING = {
    "T2": dict(par=(1, 1), intra=(0.4, 0.4), between=(0.4, 0.45), timeout=1.0, retries=1),
    "T3": dict(par=(6, 40), intra=(15e-6, 150e-6), between=(0.8e-3, 12e-3), timeout=1.0, retries=1),
    "T4": dict(par=(15, 90), intra=(8e-6, 60e-6), between=(0.3e-3, 5e-3), timeout=0.5, retries=1),
    "T5": dict(par=(40, 200), intra=(4e-6, 30e-6), between=(0.1e-3, 2e-3), timeout=0.25, retries=1),
}


def _pick_targets(rng: random.Random, net: Network, n: int) -> list[Host]:
    pool = [net.gateway, net.broker, net.nas, *net.devices]
    rng.shuffle(pool)
    return pool[:n]


def _ports_for(rng: random.Random, choice: str) -> list[int]:
    if choice == "top100":
        return NMAP_TOP1000_TCP[:100]
    if choice == "top1000":
        return NMAP_TOP1000_TCP
    if choice == "1-1024":
        return list(range(1, 1025))
    lo = rng.randint(1, 50000)
    return list(range(lo, lo + rng.randint(200, 3000)))


class _NmapProber:
    """Sends nmap probes from ``attacker`` to ``target`` and writes the target's answers."""

    def __init__(self, ctx: Ctx, attacker: Host, target: Host):
        self.ctx = ctx
        self.w = ctx.wire
        self.rng = ctx.rng
        self.a = attacker
        self.v = target
        self.rtt = rtt(self.rng, attacker, target)
        self.rtt_back = rtt(self.rng, target, attacker)
        self.window = self.rng.choice((1024, 1024, 1024, 2048, 3072, 4096))
        self.base_sport = self.rng.randint(32768, 65000)
        self.eph = Ports(self.rng, attacker)
        self.icmp_tokens = 6.0
        self.icmp_last = 0.0

    def _answer_delay(self) -> float:
        return self.rtt * (0.8 + 0.5 * self.rng.random())

    def raw_ttl(self) -> int:
        return self.rng.randint(37, 59)

    # -- TCP raw probes ------------------------------------------------------------------------------------

    def raw_probe(self, t: float, port: int, flags: int, tryno: int, *, window: int | None = None,
                  options: bytes | None = None, sport: int | None = None, df: bool = False, urgent: int = 0,
                  ack_num: int | None = None) -> bool:
        """One crafted TCP probe and the target's answer; returns True if the target answered."""
        rng = self.rng
        sport = sport if sport is not None else (self.base_sport + tryno) & 0xFFFF
        seq = rng.getrandbits(32)
        ack = ack_num if ack_num is not None else (rng.getrandbits(32) if flags & ACK else 0)
        if options is None:
            options = opt_mss(1460) if flags & SYN else b""
        win = self.window if window is None else window
        self.w.tcp(t, self.a, self.v, sport, port, seq, ack, flags, win, options, urgent=urgent,
                   ttl=self.raw_ttl(), ident=rng.getrandbits(16), df=df)
        is_open = self.v.is_open(PROTO_TCP, port)
        ta = t + self._answer_delay()
        v = self.v
        if flags & SYN and not flags & (ACK | RST):
            if flags & FIN and v.stack.style == "linux":
                return False                      # Linux drops SYN+FIN
            if is_open:
                conn = TcpConn(self.w, self.a, v, sport, port, rtt_s=self.rtt, rtt_c=self.rtt_back)
                conn.seq[0] = seq
                conn.rcv[1] = (seq + 1) & 0xFFFFFFFF
                has_ts = b"\x08\x0a" in options
                conn.peer_tsval[1] = 0xFFFFFFFF if has_ts else 0
                tsval = v.tsval(ta)
                opts = v.stack.synack_options(tsval, 0xFFFFFFFF if has_ts else None, OPT_SACK_PERM in options,
                                              b"\x03\x03" in options)
                conn.send(ta, 1, SYN | ACK, options=opts, window=v.stack.synack_window)
                # The scanner's kernel has no socket for it: RST (seq = our ISN + 1, no ACK flag).
                tr = ta + self.rtt_back * (0.8 + 0.4 * rng.random())
                self.w.tcp(tr, self.a, v, sport, port, seq + 1, 0, RST, 0, ident=0, df=True)
                return True
            if v.firewalled:
                return False
            self.w.tcp(ta, v, self.a, port, sport, 0, seq + 1, RST | ACK, 0, df=True, ident=0)
            return True
        if flags & ACK and not flags & SYN:
            # ACK probe: RST with seq = the probe's ack, open or closed (unless filtered).
            if v.firewalled and not is_open:
                return False
            self.w.tcp(ta, v, self.a, port, sport, ack, 0, RST, 0, df=True, ident=0)
            return True
        # FIN / Xmas / Null / other flag soups: open ports stay silent (RFC 793), closed answer RST/ACK.
        if is_open or v.firewalled:
            return False
        ackn = seq + (1 if flags & FIN else 0) + (1 if flags & SYN else 0)
        self.w.tcp(ta, v, self.a, port, sport, 0, ackn, RST | ACK, 0, df=True, ident=0)
        return True

    def connect_probe(self, t: float, port: int) -> bool:
        """-sT: the OS's connect(): full SYN, completed handshakes closed with RST (SO_LINGER 0)."""
        v = self.v
        conn = TcpConn(self.w, self.a, v, self.eph.next(), port, rtt_s=self.rtt, rtt_c=self.rtt_back)
        conn.syn(t)
        ta = t + self._answer_delay()
        if v.is_open(PROTO_TCP, port):
            conn.synack(ta)
            tack = ta + conn.jitter(0)
            conn.send(tack, 0, ACK)
            conn.close(tack + self.rng.uniform(20e-6, 400e-6), 0, how="rst")
            return True
        if v.firewalled:
            # The kernel retransmits the SYN once (same port and ISN) before nmap gives up on it.
            conn.seq[0] = (conn.seq[0] - 1) & 0xFFFFFFFF
            conn.syn(t + 1.0 + self.rng.uniform(0, 0.01))
            return False
        self.w.tcp(ta, v, self.a, port, conn.ports[0][0], 0, conn.seq[0], RST | ACK, 0, df=True, ident=0)
        return True

    def udp_probe(self, t: float, port: int, tryno: int) -> bool:
        rng = self.rng
        sport = (self.base_sport + tryno) & 0xFFFF
        payload = NMAP_UDP_PAYLOADS.get(port, b"")
        self.w.udp(t, self.a, self.v, sport, port, payload, ttl=self.raw_ttl(), ident=rng.getrandbits(16), df=False)
        ta = t + self._answer_delay()
        v = self.v
        if v.is_open(PROTO_UDP, port):
            if payload and port in (53, 123, 5683, 1900):
                self.w.udp(ta, v, self.a, port, sport, rng.randbytes(rng.randint(40, 120)))
                return True
            return False
        if v.firewalled:
            return False
        # Linux rate-limits ICMP errors per destination: 6-token bucket, one token per second.
        self.icmp_tokens = min(6.0, self.icmp_tokens + (ta - self.icmp_last))
        self.icmp_last = ta
        if self.icmp_tokens < 1.0:
            return False
        self.icmp_tokens -= 1.0
        original = ipv4(self.a.ip, v.ip, PROTO_UDP, udp_datagram(self.a.ip, v.ip, sport, port, payload), ttl=50,
                        ident=0, df=False)
        self.w.icmp_unreachable(ta, v, self.a, 3, original, tos=0xC0)
        return True


class NmapPortScan(Scenario):
    label = "Port Scan"
    name = "nmap-portscan"

    def plan(self, rng, net, start, max_duration):
        scan = rng.choices(["sS", "sT", "sF", "sX", "sN", "sA", "sU"], [40, 32, 5, 5, 5, 5, 8])[0]
        timing = rng.choices(["T2", "T3", "T4", "T5"], [8, 42, 38, 12])[0]
        ports = rng.choices(["top100", "top1000", "1-1024", "range"], [20, 55, 15, 10])[0]
        if scan == "sU":
            ports = "udp-top"
        n_targets = rng.choices([1, 2, 3, 4], [50, 25, 15, 10])[0]
        duration = scale_duration(rng, 20, 150, max_duration)
        attacker = rng.choice(net.attackers)
        targets = _pick_targets(rng, net, n_targets)
        params = {"scan": scan, "timing": timing, "ports": ports, "targets": [h.name for h in targets],
                  "retries": TIMING[timing]["retries"]}
        return Plan(self.label, f"nmap -{scan} -{timing} --top-ports/-p {ports}", start, start + duration, params,
                    [attacker], targets)

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        timing = TIMING[p["timing"]]
        t = ctx.start
        for target in ctx.plan.victims:
            if t >= ctx.end:
                break
            prober = _NmapProber(ctx, ctx.plan.attackers[0], target)
            if p["scan"] == "sU":
                ports = nmap_port_order(NMAP_TOP_UDP[: rng.randint(20, len(NMAP_TOP_UDP))], rng)
            else:
                ports = nmap_port_order(_ports_for(rng, p["ports"]), rng)
            t = scan_ports(ctx, prober, ports, p["scan"], timing, t) + rng.uniform(0.05, 2.0)


def scan_ports(ctx: Ctx, prober: _NmapProber, ports: list[int], scan: str, timing: dict, t: float) -> float:
    """Run one nmap scan of ``ports``; returns the time the last probe went out."""
    rng = ctx.rng
    flags = {"sS": SYN, "sF": FIN, "sX": FIN | PSH | URG, "sN": 0, "sA": ACK}.get(scan, SYN)
    par = rng.randint(*timing["par"])
    pending: list[tuple[float, int, int]] = []   # (time due, port, try)
    i = 0
    last = t
    udp_slow = scan == "sU"
    while i < len(ports) or pending:
        if t >= ctx.end:
            break
        batch = []
        for _ in range(par):
            if pending and pending[0][0] <= t:
                batch.append(pending.pop(0)[1:])
            elif i < len(ports):
                batch.append((ports[i], 0))
                i += 1
        if not batch:
            t = pending[0][0]
            continue
        for port, tryno in batch:
            if scan == "sT":
                answered = prober.connect_probe(t, port)
            elif scan == "sU":
                answered = prober.udp_probe(t, port, tryno)
            else:
                answered = prober.raw_probe(t, port, flags, tryno)
            if not answered and tryno < timing["retries"]:
                pending.append((t + timing["timeout"] * rng.uniform(0.9, 1.3), port, tryno + 1))
            last = t
            t += rng.uniform(*timing["intra"])
        pending.sort()
        if udp_slow:
            t += rng.uniform(0.7, 1.3)     # nmap backs off to the ICMP rate limit
        else:
            t += rng.uniform(*timing["between"])
    return last


class NmapOsScan(Scenario):
    label = "OS Scan"
    name = "nmap-osscan"

    def plan(self, rng, net, start, max_duration):
        timing = rng.choices(["T3", "T4", "T5"], [50, 40, 10])[0]
        n_targets = rng.choices([1, 2, 3], [60, 30, 10])[0]
        targets = [t for t in _pick_targets(rng, net, 8) if t.tcp_ports][:n_targets] or [net.gateway]
        duration = scale_duration(rng, 15, 90, max_duration)
        params = {"timing": timing, "targets": [h.name for h in targets], "ports": rng.choice(["top100", "top1000"]),
                  "discovery": rng.random() < 0.5, "os_tries": rng.choice([1, 1, 2])}
        return Plan(self.label, f"nmap -O -{timing}", start, start + duration, params,
                    [rng.choice(net.attackers)], targets)

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        t = ctx.start
        for target in ctx.plan.victims:
            if t >= ctx.end:
                break
            pr = _NmapProber(ctx, ctx.plan.attackers[0], target)
            if p["discovery"]:
                t = _host_discovery(pr, t)
            ports = nmap_port_order(_ports_for(rng, p["ports"]), rng)
            t = scan_ports(ctx, pr, ports, "sS", TIMING[p["timing"]], t) + rng.uniform(0.2, 1.0)
            open_ports = [q for q in ports if target.is_open(PROTO_TCP, q)]
            open_port = open_ports[0] if open_ports else 80
            closed_port = next(q for q in (1, 7, 9, 13, 19, 31337, 40000 + rng.randrange(20000))
                               if not target.is_open(PROTO_TCP, q))
            for _ in range(p["os_tries"]):
                t = os_probes(pr, t, open_port, closed_port) + rng.uniform(0.5, 2.0)
            t += rng.uniform(0.5, 3.0)


def _host_discovery(pr: _NmapProber, t: float) -> float:
    """nmap's default discovery as root: ICMP echo, SYN to 443, ACK to 80, ICMP timestamp."""
    rng = pr.rng
    ident = rng.getrandbits(16)
    pr.w.icmp(t, pr.a, pr.v, 8, 0, (ident << 16) | 0, b"", ttl=pr.raw_ttl(), df=False)
    pr.w.icmp(t + pr._answer_delay(), pr.v, pr.a, 0, 0, (ident << 16) | 0, b"")
    pr.raw_probe(t + 20e-6, 443, SYN, 0, sport=rng.randint(32768, 65000))
    pr.raw_probe(t + 40e-6, 80, ACK, 0, sport=rng.randint(32768, 65000))
    ts_payload = (0).to_bytes(12, "big")
    pr.w.icmp(t + 60e-6, pr.a, pr.v, 13, 0, (ident << 16) | 0, ts_payload, ttl=pr.raw_ttl(), df=False)
    pr.w.icmp(t + 60e-6 + pr._answer_delay(), pr.v, pr.a, 14, 0, (ident << 16) | 0,
              (0).to_bytes(4, "big") + rng.getrandbits(32).to_bytes(4, "big") * 2)
    return t + rng.uniform(0.05, 0.3)


_TS = opt_timestamp(0xFFFFFFFF, 0)
# nmap osscan2 probe options, in nmap's order.
SEQ_PROBES = [
    (1, opt_wscale(10) + OPT_NOP + opt_mss(1460) + _TS + OPT_SACK_PERM),
    (63, opt_mss(1400) + opt_wscale(0) + OPT_SACK_PERM + _TS + OPT_EOL),
    (4, _TS + OPT_NOP + OPT_NOP + opt_wscale(5) + OPT_NOP + opt_mss(640)),
    (4, OPT_SACK_PERM + _TS + opt_wscale(10) + OPT_EOL),
    (16, opt_mss(536) + OPT_SACK_PERM + _TS + opt_wscale(10) + OPT_EOL),
    (512, opt_mss(265) + OPT_SACK_PERM + _TS),
]
_T_OPTS = opt_wscale(10) + OPT_NOP + opt_mss(265) + _TS + OPT_SACK_PERM
ECN_OPTS = opt_wscale(10) + OPT_NOP + opt_mss(1460) + OPT_SACK_PERM + OPT_NOP + OPT_NOP


def os_probes(pr: _NmapProber, t: float, open_port: int, closed_port: int) -> float:
    rng = pr.rng
    for window, opts in SEQ_PROBES:
        pr.raw_probe(t, open_port, SYN, 0, window=window, options=opts, sport=rng.randint(32768, 65000))
        t += 0.1 + rng.uniform(0, 0.002)
    # IE: two echo requests with nmap's codes, TOS and payload sizes.
    ident = rng.getrandbits(16)
    for k, (code, tos, size, seq, df) in enumerate(((9, 0, 120, 295, True), (0, 4, 150, 296, False))):
        pr.w.icmp(t, pr.a, pr.v, 8, code, ((ident + k) << 16) | seq, b"\x00" * size, ttl=pr.raw_ttl(), tos=tos, df=df)
        reply_code = code if pr.v.stack.style == "linux" else 0
        pr.w.icmp(t + pr._answer_delay(), pr.v, pr.a, 0, reply_code, ((ident + k) << 16) | seq, b"\x00" * size,
                  tos=tos, df=False)
        t += rng.uniform(0.001, 0.02)
    # ECN probe
    pr.raw_probe(t, open_port, SYN | ECE | CWR, 0, window=3, options=ECN_OPTS, sport=rng.randint(32768, 65000),
                 urgent=0xF7F5)
    t += rng.uniform(0.001, 0.02)
    tests = [(open_port, 0, 128, True), (open_port, SYN | FIN | URG | PSH, 256, False), (open_port, ACK, 1024, True),
             (closed_port, SYN, 31337, False), (closed_port, ACK, 32768, True), (closed_port, FIN | PSH | URG, 65535, False)]
    for n, (port, flags, window, df) in enumerate(tests):
        opts = _T_OPTS if n < 5 else opt_wscale(15) + OPT_NOP + opt_mss(265) + _TS + OPT_SACK_PERM
        pr.raw_probe(t, port, flags, 0, window=window, options=opts, sport=rng.randint(32768, 65000), df=df)
        t += rng.uniform(0.0005, 0.01)
    # U1: UDP to a closed port, 300 x 'C', IP ID 0x1042.
    sport = rng.randint(32768, 65000)
    uport = rng.choice([p for p in range(30000, 40000, 37) if not pr.v.is_open(PROTO_UDP, p)])
    payload = b"C" * 300
    pr.w.udp(t, pr.a, pr.v, sport, uport, payload, ttl=pr.raw_ttl(), ident=0x1042, df=False)
    original = ipv4(pr.a.ip, pr.v.ip, PROTO_UDP, udp_datagram(pr.a.ip, pr.v.ip, sport, uport, payload), ttl=50,
                    ident=0x1042, df=False)
    if not pr.v.firewalled:
        pr.w.icmp_unreachable(t + pr._answer_delay(), pr.v, pr.a, 3, original, tos=0xC0)
    return t


class NiktoScan(Scenario):
    label = "Vulnerability Scan"
    name = "nikto"

    SERVERS = [("nginx/1.18.0 (Ubuntu)", 162), ("Apache/2.4.41 (Ubuntu)", 274), ("lighttpd/1.4.59", 345),
               ("Boa/0.94.14rc21", 132), ("GoAhead-Webs", 174), ("mini_httpd/1.30 26Oct2018", 230)]

    def plan(self, rng, net, start, max_duration):
        web = net.web_servers()
        victim = rng.choice(web)
        server, nf_size = rng.choice(self.SERVERS)
        duration = scale_duration(rng, 30, 180, max_duration)
        params = {"port": 80, "rate_rps": round(rng.uniform(15, 90), 1), "keep_alive": rng.random() < 0.35,
                  "server": server, "not_found_bytes": nf_size, "test_base": rng.randint(1, 7000),
                  "tuning": rng.choice(["default", "x6", "123b", "4"])}
        return Plan(self.label, "nikto -h", start, start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        host = ".".join(str(b) for b in v.ip)
        eph = Ports(rng, a)
        n_req = int((ctx.end - ctx.start) * p["rate_rps"])
        paths = nikto_paths(rng, n_req)
        base_rtt = rtt(rng, a, v)
        t = ctx.start
        test = p["test_base"]
        i = 0
        while i < len(paths) and t < ctx.end:
            conn = TcpConn(ctx.wire, a, v, eph.next(), p["port"], rtt_s=base_rtt, rtt_c=rtt(rng, v, a))
            t = conn.handshake(t) + rng.uniform(20e-6, 300e-6)
            batch = rng.randint(5, 60) if p["keep_alive"] else 1
            for _ in range(batch):
                if i >= len(paths) or t >= ctx.end:
                    break
                path = paths[i]
                i += 1
                test += rng.randint(1, 3)
                method = "GET" if rng.random() < 0.9 else rng.choice(["HEAD", "OPTIONS", "POST", "PROPFIND", "TRACE"])
                ua = f"Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:{test:06d})"
                req = http_request(method, path, host, ua, keep_alive=p["keep_alive"])
                status = rng.choices([404, 200, 403, 301, 400, 401], [78, 8, 6, 4, 2, 2])[0]
                if status == 404:
                    body = html_page(rng, p["not_found_bytes"], "404 Not Found")
                elif status == 200:
                    body = html_page(rng, rng.randint(300, 6000), "Index")
                else:
                    body = html_page(rng, rng.randint(120, 400), str(status))
                if method == "HEAD":
                    body = b""
                resp = http_response(status, body, p["server"], keep_alive=p["keep_alive"])
                t = conn.exchange(t, req, resp, server_time=rng.uniform(0.0003, 0.004))
                t += rng.uniform(0.0005, 2.0 / p["rate_rps"])
            if p["keep_alive"]:
                conn.close(t, 0)
            else:
                conn.close(t, 1)   # the server closes "Connection: close" responses first
            t += rng.uniform(0.0002, 1.0 / p["rate_rps"])


SCENARIOS = [NmapPortScan(), NmapOsScan(), NiktoScan()]
