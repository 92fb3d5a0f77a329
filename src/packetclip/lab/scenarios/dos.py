"""Denial of service: hping3 SYN/UDP/ICMP floods, random-subdomain DNS floods (slowloris: ``slowloris.py``).

hping3 defaults are kept where the tool has them: TCP window 64, TTL 64, no TCP options, source port
incremented per packet from a random base, data bytes filled with 'X', ICMP id fixed and seq counting.
Spoofing is per episode: random source per packet (--rand-source), one fixed spoofed address (-a), or
the attacker's own address. The victim answers like Linux: SYN/ACK (retransmitted while the backlog
holds the half-open entry, SYN cookies without retransmission after it is full), RST/ACK for closed
ports, ICMP port unreachable under the kernel's ICMP rate limit, echo replies to every echo request.
"""

from __future__ import annotations

import random
import string

from packetclip.lab.network import Host, Network, random_public_ip
from packetclip.lab.packets import (ACK, PROTO_TCP, PROTO_UDP, RST, SYN, ipv4, opt_mss, udp_datagram)
from packetclip.lab.protocols import dns_query, dns_response
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, rtt, scale_duration
from packetclip.lab.wire import ROLE_ATTACKER, ROLE_VICTIM


def _flood_times(rng: random.Random, start: float, end: float, rate: float, style: str):
    """Send times of hping3 -i u<N> (regular, usleep jitter) or --flood-like bursts throttled to ``rate``."""
    t = start
    interval = 1.0 / rate
    if style == "interval":
        while t < end:
            yield t
            t += interval * (1.0 + 0.08 * rng.random()) + 55e-6 * rng.random()
    else:
        while t < end:
            burst = rng.randint(8, 64)
            for _ in range(burst):
                yield t
                t += rng.uniform(2e-6, 12e-6)
            t += burst * interval * (0.7 + 0.6 * rng.random())


class _Spoofer:
    """Source addresses for one flood."""

    def __init__(self, rng: random.Random, net: Network, mode: str, attacker: Host):
        self.rng = rng
        self.mode = mode
        self.attacker = attacker
        self.fixed = random_public_ip(rng) if mode == "fixed" else None
        self.net = net

    def next(self) -> bytes:
        if self.mode == "random":
            return random_public_ip(self.rng)
        if self.mode == "fixed":
            return self.fixed
        return self.attacker.ip


def _spoof_host(net: Network, attacker: Host, ip: bytes) -> Host:
    """The answering side's view of a spoofed source: reached through the gateway unless it is the attacker."""
    if ip == attacker.ip:
        return attacker
    return Host("spoofed", "remote", ip, b"\x00" * 6, attacker.stack, hops=1)


def _flood_victim(rng: random.Random, net: Network) -> Host:
    return rng.choice([net.gateway, net.broker, net.nas, *net.devices_of("ip-camera", "smart-speaker", "smart-plug")])


def _flood_common(rng: random.Random, net: Network, start: float, max_duration: float, cfg: dict):
    duration = scale_duration(rng, *cfg["flood_duration_s"], max_duration)
    rate = rng.uniform(*cfg["flood_rate_pps"])
    spoof = rng.choices(["random", "fixed", "none"], [50, 20, 30])[0]
    style = rng.choice(["interval", "interval", "burst"])
    return duration, round(rate, 1), spoof, style


class _Flood(Scenario):
    """Floods share their rate/duration/spoofing ranges, given once by the lab's configuration."""

    def __init__(self, cfg: dict):
        self.cfg = cfg


class Hping3SynFlood(_Flood):
    label = "SYN Flood"
    name = "hping3-syn"

    def plan(self, rng, net, start, max_duration):
        duration, rate, spoof, style = _flood_common(rng, net, start, max_duration, self.cfg)
        victim = _flood_victim(rng, net)
        open_ports = sorted(victim.tcp_ports) or [80]
        dport = rng.choice(open_ports) if rng.random() < 0.85 else rng.choice([80, 443, 8080])
        params = {"rate_pps": rate, "spoof": spoof, "timing": style, "dport": dport,
                  "data": rng.choice([0, 0, 0, 0, 20, 64, 120]), "window": 64, "backlog": rng.choice([128, 256, 512, 1024])}
        tool = "hping3 -S " + ("--rand-source " if spoof == "random" else "-a <spoofed> " if spoof == "fixed" else "") + f"-p {dport}"
        return Plan(self.label, tool, start, start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        spoof = _Spoofer(rng, net, p["spoof"], a)
        sport = rng.randint(1024, 65535)
        is_open = v.is_open(PROTO_TCP, p["dport"])
        data = b"X" * p["data"]
        base_rtt = rtt(rng, a, v)
        half_open = 0
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"], p["timing"]):
            src = spoof.next()
            sport = sport + 1 if sport < 65535 else 0
            seq = rng.getrandbits(32)
            w.tcp(t, a, v, sport, p["dport"], seq, 0, SYN, p["window"], b"", data, src_ip=src, ttl=64,
                  ident=rng.getrandbits(16), df=False, role=ROLE_ATTACKER)
            if rng.random() < 0.04:
                continue      # dropped at the victim's NIC under load
            ta = t + base_rtt * rng.uniform(0.8, 2.5)
            peer = _spoof_host(net, a, src)
            if not is_open:
                w.tcp(ta, v, peer, p["dport"], sport, 0, seq + 1 + len(data), RST | ACK, 0, df=True, ident=0,
                      role=ROLE_VICTIM)
                continue
            isn = rng.getrandbits(32)
            w.tcp(ta, v, peer, p["dport"], sport, isn, seq + 1, SYN | ACK, v.stack.synack_window, opt_mss(v.stack.mss),
                  df=True, role=ROLE_VICTIM)
            if src == a.ip:
                w.tcp(ta + rtt(rng, v, a), a, v, sport, p["dport"], seq + 1, 0, RST, 0, df=True, ident=0,
                      role=ROLE_ATTACKER)
            elif half_open < p["backlog"]:
                half_open += 1
                for delay in (1.0, 3.0):      # SYN/ACK retransmissions of a queued half-open connection
                    if ta + delay < ctx.end + 3:
                        w.tcp(ta + delay, v, peer, p["dport"], sport, isn, seq + 1, SYN | ACK,
                              v.stack.synack_window, opt_mss(v.stack.mss), df=True, role=ROLE_VICTIM)


class Hping3UdpFlood(_Flood):
    label = "UDP Flood"
    name = "hping3-udp"

    def plan(self, rng, net, start, max_duration):
        duration, rate, spoof, style = _flood_common(rng, net, start, max_duration, self.cfg)
        victim = _flood_victim(rng, net)
        port_mode = rng.choice(["fixed", "fixed", "increment"])
        params = {"rate_pps": rate, "spoof": spoof, "timing": style, "port_mode": port_mode,
                  "dport": rng.choice([0, 53, 80, 123, 161, 1900, 5683, 7, rng.randint(1024, 65000)]),
                  "data": rng.choice([0, 8, 32, 64, 100, 120, 512, 1024, 1400])}
        tool = "hping3 --udp " + ("--rand-source " if spoof == "random" else "") + \
            f"-p {'++' if port_mode == 'increment' else ''}{params['dport']} -d {params['data']}"
        return Plan(self.label, tool, start, start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        spoof = _Spoofer(rng, net, p["spoof"], a)
        sport = rng.randint(1024, 65535)
        dport = p["dport"]
        payload = b"X" * p["data"]
        base_rtt = rtt(rng, a, v)
        tokens: dict[bytes, tuple[float, float]] = {}
        global_tokens, global_last = 50.0, ctx.start
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"], p["timing"]):
            src = spoof.next()
            sport = sport + 1 if sport < 65535 else 0
            if p["port_mode"] == "increment":
                dport = dport + 1 if dport < 65535 else 0
            w.udp(t, a, v, sport, dport, payload, src_ip=src, ttl=64, ident=rng.getrandbits(16), df=False,
                  role=ROLE_ATTACKER)
            if v.is_open(PROTO_UDP, dport):
                continue   # the service discards garbage
            # Linux ICMP rate limits: per destination (burst 6, 1/s) and global (icmp_msgs_per_sec 1000).
            ta = t + base_rtt * rng.uniform(0.8, 1.5)
            tok, last = tokens.get(src, (6.0, ta))
            tok = min(6.0, tok + (ta - last))
            global_tokens = min(50.0, global_tokens + (ta - global_last) * 1000.0)
            global_last = ta
            if tok < 1.0 or global_tokens < 1.0:
                tokens[src] = (tok, ta)
                continue
            tokens[src] = (tok - 1.0, ta)
            global_tokens -= 1.0
            original = ipv4(src, v.ip, PROTO_UDP, udp_datagram(src, v.ip, sport, dport, payload), ttl=63, ident=0,
                            df=False)
            w.icmp_unreachable(ta, v, _spoof_host(net, a, src), 3, original, tos=0xC0, role=ROLE_VICTIM)
            if len(tokens) > 50000:
                tokens.clear()


class Hping3IcmpFlood(_Flood):
    label = "ICMP Flood"
    name = "hping3-icmp"

    def plan(self, rng, net, start, max_duration):
        duration, rate, spoof, style = _flood_common(rng, net, start, max_duration, self.cfg)
        victim = _flood_victim(rng, net)
        tool = rng.choice(["hping3", "hping3", "ping -f"])
        params = {"rate_pps": rate, "spoof": spoof if tool == "hping3" else "none", "timing": style, "tool": tool,
                  "data": 56 if tool == "ping -f" else rng.choice([0, 0, 32, 64, 120, 500, 1000, 1400])}
        name = "hping3 --icmp " + ("--rand-source " if params["spoof"] == "random" else "") + f"-d {params['data']}" \
            if tool == "hping3" else f"ping -f -s {params['data']}"
        return Plan(self.label, name, start, start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        spoof = _Spoofer(rng, net, p["spoof"], a)
        ident = rng.getrandbits(16)
        if p["tool"] == "ping -f":
            pattern = bytes(range(0x10, 0x38))
            payload_of = lambda t: int(t).to_bytes(8, "little") + int((t % 1) * 1e6).to_bytes(8, "little") + pattern  # noqa: E731
        else:
            fixed = b"X" * p["data"]
            payload_of = lambda t: fixed  # noqa: E731
        base_rtt = rtt(rng, a, v)
        seq = 0
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"], p["timing"]):
            src = spoof.next()
            payload = payload_of(t)
            rest = (ident << 16) | seq
            w.icmp(t, a, v, 8, 0, rest, payload, src_ip=src, ttl=64, df=p["tool"] == "ping -f", role=ROLE_ATTACKER)
            seq = (seq + 1) & 0xFFFF
            if rng.random() < 0.03:
                continue
            w.icmp(t + base_rtt * rng.uniform(0.8, 2.0), v, _spoof_host(net, a, src), 0, 0, rest, payload,
                   df=False, role=ROLE_VICTIM)


class DnsFlood(_Flood):
    label = "DNS Flood"
    name = "dns-water-torture"

    def plan(self, rng, net, start, max_duration):
        duration = scale_duration(rng, *self.cfg["flood_duration_s"], max_duration)
        rate = rng.uniform(*self.cfg["flood_rate_pps"]) * rng.uniform(0.3, 0.8)
        domain = rng.choice(["victim-corp.com", "example-shop.net", "bank-portal.org", "iot-vendor.io", "game-srv.net"])
        params = {"rate_qps": round(rate, 1), "domain": domain, "label_len": [rng.randint(6, 10), rng.randint(11, 20)],
                  "qtypes": rng.choice([["A"], ["A", "AAAA"], ["A", "ANY"], ["A", "MX", "TXT"]]),
                  "sources": rng.choice(["attackers", "attackers", "spoofed"]), "drop": round(rng.uniform(0.0, 0.3), 2),
                  "servfail": round(rng.uniform(0.0, 0.2), 2), "edns": rng.random() < 0.5}
        victim = net.gateway
        tool = f"dnsflood {domain} (random subdomains)"
        attackers = net.attackers if params["sources"] == "attackers" else [rng.choice(net.attackers)]
        return Plan(self.label, tool, start, start + duration, params, list(attackers), [victim])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        v = ctx.plan.victims[0]
        alphabet = string.ascii_lowercase + string.digits
        lo, hi = p["label_len"]
        ports = {a.name: Ports(rng, a) for a in ctx.plan.attackers}
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_qps"], "interval"):
            a = rng.choice(ctx.plan.attackers)
            src = random_public_ip(rng) if p["sources"] == "spoofed" else a.ip
            sport = ports[a.name].next() if p["sources"] != "spoofed" else rng.randint(1024, 65535)
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi))) + "." + p["domain"]
            if rng.random() < 0.3:
                name = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 8))) + "." + name
            q = dns_query(rng.getrandbits(16), name, rng.choice(p["qtypes"]), edns=p["edns"])
            w.udp(t, a, v, sport, 53, q, src_ip=src, role=ROLE_ATTACKER)
            if rng.random() < p["drop"]:
                continue
            peer = _spoof_host(net, a, src)
            r = rng.random()
            if r < p["servfail"]:
                resp, delay = dns_response(q, [], rcode=2), rng.uniform(1.0, 5.0)
            else:
                resp, delay = dns_response(q, [], rcode=3, authority_soa=True, rng=rng), rng.uniform(0.012, 0.09)
            w.udp(t + delay, v, peer, 53, sport, resp, role=ROLE_VICTIM)


def scenarios(cfg: dict) -> list[Scenario]:
    from packetclip.lab.scenarios.slowloris import Slowloris

    return [Hping3SynFlood(cfg), Hping3UdpFlood(cfg), Hping3IcmpFlood(cfg), DnsFlood(cfg), Slowloris()]
