"""Volumetric DoS beyond the paper's floods: reflection/amplification and TCP ACK/RST floods.

**Reflection/amplification** (T1498.002): the attacker sends small requests with the victim's address as source
to open reflectors, which answer the victim with much larger datagrams. Two vantage points, as a LAN capture
sees them: (1) a lab host is the victim: only the reflectors' answers arrive (from many Internet addresses,
source port 53/123/1900/389), and the victim's kernel answers some with ICMP port unreachable under its rate
limit; (2) lab devices are the reflectors (the gateway's open resolver, SSDP on TVs and speakers, NTP): the
spoofed requests come in from the Internet and the amplified answers leave for the victim. Payloads follow the
protocols: DNS ``ANY``/``TXT`` queries with EDNS answered by ~1.2-1.4 kB responses, NTP mode-7 ``monlist``
(8-byte request, up to 100 answers of 440 bytes), SSDP ``M-SEARCH ssdp:all`` answered by one 300-byte
datagram per service, CLDAP ``searchRequest`` for the root DSE (rootDSE answers of ~1.4 kB). Answers stay
below the MTU (EDNS 1232-1400-byte buffers), so no IP fragments are written.

**TCP ACK/RST flood** (hping3 -A / -R / -PA with --flood, --rand-source): out-of-state segments to an open port.
The victim's Linux stack answers an ACK without a connection with a RST (seq = the segment's ACK number) under
its RST rate limit; a RST without a connection gets nothing back.
"""

from __future__ import annotations

import random
import struct

from packetclip.lab.packets import ACK, PROTO_UDP, PSH, RST, ipv4, udp_datagram
from packetclip.lab.protocols import dns_query, dns_response
from packetclip.lab.scenarios.base import Ctx, Plan, Scenario, rtt, scale_duration
from packetclip.lab.scenarios.dos import _flood_common, _flood_times, _flood_victim, _spoof_host, _Spoofer
from packetclip.lab.wire import ROLE_ATTACKER, ROLE_OTHER, ROLE_VICTIM

REFLECTOR_PORTS = {"dns": 53, "ntp": 123, "ssdp": 1900, "cldap": 389}


def _request(rng: random.Random, proto: str) -> bytes:
    if proto == "dns":
        return dns_query(rng.getrandbits(16), rng.choice(["isc.org", "ripe.net", "cpsc.gov", "sl."]).rstrip("."),
                         rng.choice(["ANY", "ANY", "TXT"]), edns=True)
    if proto == "ntp":
        return bytes([0x17, 0x00, 0x03, 0x2A]) + b"\x00" * 4           # mode 7, REQ_MON_GETLIST_1
    if proto == "ssdp":
        return b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"
    # CLDAP searchRequest, baseObject "", filter (objectclass=*), as the amplification scripts send it
    return bytes.fromhex("30250201016320040000000a01000a0100020100020100010100870b6f626a656374636c6173733000")


def _answers(rng: random.Random, proto: str, request: bytes, size: int) -> list[bytes]:
    """The reflector's answer datagrams to one request."""
    if proto == "dns":
        n = max(1, (size - 60) // 270)
        txt = [("TXT", 3600, bytes([255]) + bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789=") for _ in range(255)))
               for _ in range(n)]
        return [dns_response(request, txt, rng=rng)]
    if proto == "ntp":
        count = rng.randint(max(1, size // 440), 100) if size > 440 else 1
        out = []
        for i in range(min(count, 100)):
            entries = b"".join(rng.randbytes(72) for _ in range(6))
            out.append(bytes([0x97 if i < count - 1 else 0x17, 0x00, 0x03, 0x2A]) + struct.pack("!HH", 6, 72) + entries)
        return out
    if proto == "ssdp":
        out = []
        for st in ["upnp:rootdevice", "urn:schemas-upnp-org:device:MediaRenderer:1",
                   "urn:schemas-upnp-org:service:ConnectionManager:1", "urn:dial-multiscreen-org:service:dial:1",
                   "urn:schemas-upnp-org:service:RenderingControl:1", "urn:schemas-upnp-org:service:AVTransport:1"
                   ][: rng.randint(2, 6)]:
            out.append(("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n"
                        f"LOCATION: http://192.168.1.{rng.randint(2, 250)}:{rng.choice([49152, 8008, 1400])}/desc.xml\r\n"
                        "SERVER: Linux/3.10 UPnP/1.0 IpBridge/1.26.0\r\n"
                        f"ST: {st}\r\nUSN: uuid:{rng.randbytes(16).hex()}::{st}\r\n\r\n").encode())
        return out
    body = b"\x30\x84" + struct.pack("!I", size - 6) + rng.randbytes(size - 6)
    return [body[:1400]]


class ReflectionAmplification(Scenario):
    label = "Reflection Amplification"
    name = "reflection-amplification"

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def plan(self, rng, net, start, max_duration):
        duration = scale_duration(rng, *self.cfg["flood_duration_s"], max_duration)
        rate = rng.uniform(*self.cfg["flood_rate_pps"])
        vantage = rng.choice(["victim-in-lab", "victim-in-lab", "reflector-in-lab"])
        if vantage == "victim-in-lab":
            proto = rng.choice(["dns", "dns", "ntp", "ssdp", "cldap"])
            victim = _flood_victim(rng, net)
            reflectors = []
            params = {"vantage": vantage, "proto": proto, "rate_pps": round(rate, 1),
                      "reflectors": rng.choice([8, 30, 100, 300]), "answer_bytes": rng.randint(900, 1400),
                      "victim_port": rng.choice(["random", "fixed"])}
            attackers = [rng.choice(net.attackers)]      # the attack's author; its packets never reach the lab
        else:
            options = [("dns", net.gateway)] + [("ssdp", d) for d in net.devices if 1900 in d.udp_ports]
            options += [("ssdp", net.gateway)]
            proto, reflector = rng.choice(options)
            victim = net.remote_host(rng, name="amplification-victim")
            reflectors = [reflector]
            params = {"vantage": vantage, "proto": proto, "rate_pps": round(rate * 0.3, 1),
                      "reflectors": 1, "answer_bytes": rng.randint(900, 1400), "victim_port": "random",
                      "reflector": reflector.name, "victim_ip": ".".join(map(str, victim.ip))}
            attackers = [rng.choice(net.attackers)]
        tool = f"{proto} amplification ({'spoofed requests to reflectors' if vantage == 'victim-in-lab' else 'lab device as reflector'})"
        return Plan(self.label, tool, start, start + duration, params, attackers, [victim, *reflectors])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        a = ctx.plan.attackers[0]
        v = ctx.plan.victims[0]
        proto, port = p["proto"], REFLECTOR_PORTS[p["proto"]]
        vport = rng.randint(1024, 65535)
        if p["vantage"] == "victim-in-lab":
            refl = [net.remote_host(rng, name="reflector", stack=rng.choice(["linux4", "linux5"]))
                    for _ in range(p["reflectors"])]
            tokens, last = 6.0, ctx.start
            # the flood's packet rate is that of the answers arriving: a monlist request brings up to 100
            per_request = {"dns": 1.0, "ntp": 50.0, "ssdp": 4.0, "cldap": 1.0}[proto]
            for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"] / per_request, "interval"):
                r = rng.choice(refl)
                sport = vport if p["victim_port"] == "fixed" else rng.randint(1024, 65535)
                req = _request(rng, proto)
                for k, ans in enumerate(_answers(rng, proto, req, p["answer_bytes"])):
                    w.udp(t + k * 2e-4, r, v, port, sport, ans, role=ROLE_ATTACKER)
                # the victim's kernel: port unreachable, rate limited (6-token bucket, 1/s per destination... and
                # globally); only the first answer of a request may trigger one
                tokens = min(6.0, tokens + (t - last))
                last = t
                if tokens >= 1.0 and not v.is_open(PROTO_UDP, sport):
                    tokens -= 1.0
                    ans = _answers(rng, proto, req, p["answer_bytes"])[0]
                    original = ipv4(r.ip, v.ip, PROTO_UDP, udp_datagram(r.ip, v.ip, port, sport, ans), ttl=r.ttl)
                    w.icmp_unreachable(t + rtt(rng, r, v) * 0.1, v, r, 3, original, tos=0xC0, role=ROLE_VICTIM)
            return
        reflector = ctx.plan.victims[1]
        victim = v
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"], "interval"):
            sport = rng.randint(1024, 65535)
            req = _request(rng, proto)
            # the spoofed request carries the victim's address: it is the attacker's packet
            w.udp(t, victim, reflector, sport, port, req, role=ROLE_ATTACKER)
            delay = rng.uniform(2e-4, 3e-3)
            for k, ans in enumerate(_answers(rng, proto, req, p["answer_bytes"])):
                w.udp(t + delay + k * 1e-4, reflector, victim, port, sport, ans, role=ROLE_OTHER)


class AckFlood(Scenario):
    label = "ACK Flood"
    name = "hping3-ack-rst"

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def plan(self, rng, net, start, max_duration):
        duration, rate, spoof, style = _flood_common(rng, net, start, max_duration, self.cfg)
        victim = _flood_victim(rng, net)
        flags = rng.choice(["A", "A", "PA", "R", "RA"])
        open_ports = sorted(victim.tcp_ports) or [80]
        dport = rng.choice(open_ports) if rng.random() < 0.8 else rng.randint(1, 65535)
        params = {"rate_pps": rate, "spoof": spoof, "timing": style, "flags": flags, "dport": dport,
                  "data": rng.choice([0, 0, 0, 64, 120]) if flags == "PA" else 0, "window": 64}
        flag_opt = {"A": "-A", "PA": "-PA", "R": "-R", "RA": "-RA"}[flags]
        tool = f"hping3 {flag_opt} " + ("--rand-source " if spoof == "random" else "") + f"-p {dport} --flood"
        return Plan(self.label, tool, start, start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        spoof = _Spoofer(rng, net, p["spoof"], a)
        bits = {"A": ACK, "PA": ACK | PSH, "R": RST, "RA": RST | ACK}[p["flags"]]
        sport = rng.randint(1024, 65535)
        data = b"X" * p["data"]
        base_rtt = rtt(rng, a, v)
        rst_tokens, last = 10.0, ctx.start
        for t in _flood_times(rng, ctx.start, ctx.end, p["rate_pps"], p["timing"]):
            src = spoof.next()
            sport = sport + 1 if sport < 65535 else 1024
            seq, ack = rng.getrandbits(32), rng.getrandbits(32)
            w.tcp(t, a, v, sport, p["dport"], seq, ack if bits & ACK else 0, bits, p["window"], b"", data,
                  src_ip=src, ttl=64, ident=rng.getrandbits(16), df=False, role=ROLE_ATTACKER)
            if bits & RST:
                continue                 # a RST never gets an answer
            # RFC 793: a segment with ACK and no connection gets a RST with seq = its ACK number; Linux limits
            # out-of-window RSTs (tcp_invalid_ratelimit / the global ICMP-like bucket)
            rst_tokens = min(10.0, rst_tokens + (t - last) * 1000.0)
            last = t
            if rst_tokens < 1.0 or (v.firewalled and not v.is_open(6, p["dport"])):
                continue
            rst_tokens -= 1.0
            w.tcp(t + base_rtt * rng.uniform(0.8, 2.0), v, _spoof_host(net, a, src), p["dport"], sport, ack, 0, RST,
                  0, df=True, ident=0, role=ROLE_VICTIM)

