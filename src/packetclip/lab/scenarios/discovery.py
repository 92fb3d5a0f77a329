"""Reconnaissance beyond TCP port scans: nmap -sU UDP scans, ping sweeps and nmap -sV service probing.

* **UDP scan** (nmap -sU): one UDP datagram per port (nmap's protocol payloads for DNS, NTP, SNMP, NetBIOS,
  SSDP, CoAP; empty otherwise), a retransmission from the next source port for unanswered ports; closed ports
  answer ICMP port unreachable, which Linux rate-limits (6-token bucket, one per second per destination), so
  nmap slows to about one round per second: a UDP scan is slow and mostly ICMP errors.
* **Ping sweep** (nmap -sn --send-ip; nmap -sn without root, which connect()s to ports 80 and 443 with the
  laptop's own TCP stack; fping -g; a shell loop of ping -c 1): host discovery across the lab's
  subnet. On the LAN only live hosts ever see an IP packet (addresses nobody answers ARP for never get one), so
  the sweep shows the live hosts probed in address order: ICMP echo (nmap adds SYN 443, ACK 80 and an ICMP
  timestamp request), echo replies from those that answer (hosts with a firewall stay silent and get fping's
  retries with its 1.5x back-off).
* **Service scan** (nmap -sV): after a SYN scan of the top ports (a connect scan with the OS's own stack when
  nmap runs without root, e.g. on a macOS or Windows laptop), one connection per open port for the NULL
  probe (wait up to 5 s for a banner: SSH, FTP, Telnet, MQTT-less services greet first), then nmap's probes in
  rarity order for silent services (GetRequest, HTTPOptions, RTSPRequest, SSLSessionReq/TLS ClientHello,
  GenericLines, MQTT CONNECT on 1883), each on a new connection, and UDP version probes (DNS version.bind
  CHAOS TXT, NTP, SSDP, CoAP) to open UDP ports.
"""

from __future__ import annotations


from packetclip.lab.network import with_stack
from packetclip.lab.packets import SYN
from packetclip.lab.protocols import (FTP_BANNERS, SSH_SERVER_BANNERS, TELNET_NEGOTIATION_SERVER, dns_query,
                                      dns_response, html_page, http_response, mqtt_connack, mqtt_connect,
                                      tls_client_hello, tls_server_flight)
from packetclip.lab.scenarios.base import Ctx, Plan, Scenario, rtt, scale_duration
from packetclip.lab.scenarios.recon import TIMING, _host_discovery, _NmapProber, _pick_targets, scan_ports
from packetclip.lab.tooldata import NMAP_TOP1000_TCP, NMAP_TOP_UDP, nmap_port_order
from packetclip.lab.wire import TcpConn


class UdpScan(Scenario):
    label = "UDP Scan"
    name = "nmap-udp"

    def plan(self, rng, net, start, max_duration):
        timing = rng.choices(["T3", "T4", "T5"], [40, 45, 15])[0]
        n_ports = rng.choice([100, 200, 1000])
        duration = scale_duration(rng, 40, 200, max_duration)
        targets = _pick_targets(rng, net, rng.choice([1, 1, 2, 3]))
        params = {"timing": timing, "ports": n_ports, "targets": [h.name for h in targets], "retries": 1}
        return Plan(self.label, f"nmap -sU -{timing} --top-ports {n_ports}", start, start + duration, params,
                    [rng.choice(net.attackers)], targets)

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        timing = TIMING[p["timing"]]
        t = ctx.start
        top = set(NMAP_TOP_UDP)
        extra = [q for q in range(1, 65536) if q not in top]   # once, not a set per port per target
        for target in ctx.plan.victims:
            if t >= ctx.end:
                break
            prober = _NmapProber(ctx, ctx.plan.attackers[0], target)
            ports = list(NMAP_TOP_UDP) + rng.sample(extra, max(0, p["ports"] - len(NMAP_TOP_UDP)))
            t = scan_ports(ctx, prober, nmap_port_order(ports, rng), "sU", timing, t) + rng.uniform(0.05, 2.0)


class PingSweep(Scenario):
    label = "Ping Sweep"
    name = "ping-sweep"

    def plan(self, rng, net, start, max_duration):
        tool = rng.choices(["nmap -sn --send-ip", "nmap -sn (unprivileged)", "fping -a -g", "ping loop"],
                           [35, 25, 25, 15])[0]
        duration = scale_duration(rng, 10, 120, max_duration)
        params = {"tool": tool, "sweeps": rng.choice([1, 1, 2, 3, 5]), "gap_s": rng.uniform(0.0005, 0.02)
                  if tool != "ping loop" else rng.uniform(0.005, 0.05), "fping_retries": 3,
                  "stack": rng.choice(["macos", "windows10", "linux5"]) if "unprivileged" in tool else None}
        return Plan(self.label, tool + " " + ".".join(map(str, net.subnet)) + ".0/24", start, start + duration,
                    params, [rng.choice(net.attackers)], [h for h in net.local_hosts if h not in net.attackers])

    def run(self, ctx: Ctx) -> None:
        rng, w = ctx.rng, ctx.wire
        p = ctx.params
        a = ctx.plan.attackers[0]
        live = sorted(ctx.plan.victims, key=lambda h: h.ip)
        every = (ctx.end - ctx.start) / p["sweeps"]
        ident = rng.getrandbits(16)
        if p.get("stack"):
            a = with_stack(a, p["stack"])
        for s in range(p["sweeps"]):
            t = ctx.start + s * every
            for k, h in enumerate(live):
                if t >= ctx.end:
                    return
                answers = not h.firewalled and h.kind != "workstation"
                if p["tool"] == "nmap -sn --send-ip":
                    pr = _NmapProber(ctx, a, h)
                    if answers:
                        _host_discovery(pr, t)
                    else:
                        pr.raw_probe(t, 443, SYN, 0, sport=rng.randint(32768, 65000))
                elif p["tool"] == "nmap -sn (unprivileged)":
                    # without root nmap cannot send ICMP: it connect()s to ports 80 and 443 of every address
                    pr = _NmapProber(ctx, a, h)
                    pr.connect_probe(t, 80)
                    pr.connect_probe(t + rng.uniform(20e-6, 200e-6), 443)
                elif p["tool"] == "fping -a -g":
                    payload = b"\x00" * 56
                    wait = 0.5
                    for tryno in range(1 + (0 if answers else p["fping_retries"])):
                        seq = (k + tryno * len(live)) & 0xFFFF
                        w.icmp(t + tryno * wait, a, h, 8, 0, (ident << 16) | seq, payload)
                        if answers:
                            w.icmp(t + rtt(rng, a, h), h, a, 0, 0, (ident << 16) | seq, payload)
                        wait *= 1.5
                else:
                    pid = rng.getrandbits(16)       # a new ping process per address: its own ICMP id
                    payload = rng.randbytes(16) + bytes(range(0x10, 0x38))
                    w.icmp(t, a, h, 8, 0, (pid << 16) | 1, payload)
                    if answers:
                        w.icmp(t + rtt(rng, a, h), h, a, 0, 0, (pid << 16) | 1, payload)
                t += p["gap_s"] * rng.uniform(0.7, 1.3) + (1.0 if p["tool"] == "ping loop" and not answers else 0.0)


class ServiceScan(Scenario):
    label = "Service Scan"
    name = "nmap-sV"

    def plan(self, rng, net, start, max_duration):
        duration = scale_duration(rng, 30, 180, max_duration)
        # -sV is run against hosts with services (a host with no open TCP port gives it nothing to probe)
        servers = [h for h in [net.gateway, net.broker, net.nas, *net.devices] if h.tcp_ports]
        targets = rng.sample(servers, min(len(servers), rng.choice([1, 1, 2])))
        # without root (nmap on a laptop) the port-scan phase is a connect scan with the laptop's own TCP stack
        privileged = rng.random() < 0.5
        params = {"timing": rng.choice(["T3", "T4"]), "top_ports": rng.choice([100, 1000]),
                  "intensity": rng.choice([7, 7, 9, 2]), "udp": privileged and rng.random() < 0.4,
                  "scan": "sS" if privileged else "sT",
                  "stack": None if privileged else rng.choice(["macos", "windows10", "linux5"])}
        return Plan(self.label, f"nmap -sV -{params['scan']} -{params['timing']} --version-intensity "
                    f"{params['intensity']}", start,
                    start + duration, params, [rng.choice(net.attackers)], targets)

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        t = ctx.start
        a = ctx.plan.attackers[0]
        if p.get("stack"):
            a = with_stack(a, p["stack"])
        for v in ctx.plan.victims:
            if t >= ctx.end:
                break
            pr = _NmapProber(ctx, a, v)
            ports = nmap_port_order(NMAP_TOP1000_TCP[: p["top_ports"]], rng)
            t = scan_ports(ctx, pr, ports, p.get("scan", "sS"), TIMING[p["timing"]], t) + rng.uniform(0.2, 1.0)
            for port in sorted(v.tcp_ports):
                if t >= ctx.end:
                    break
                t = self._probe_tcp(ctx, pr, v, port, t)
            if p["udp"]:
                for port in sorted(v.udp_ports):
                    t = self._probe_udp(ctx, a, v, port, t)

    @staticmethod
    def _probe_tcp(ctx: Ctx, pr: _NmapProber, v, port: int, t: float) -> float:
        rng = ctx.rng
        a = pr.a
        host = ".".join(map(str, v.ip))
        banner = {22: (rng.choice(SSH_SERVER_BANNERS) + "\r\n").encode(),
                  21: (rng.choice(FTP_BANNERS).replace("{ip}", host) + "\r\n").encode(),
                  23: TELNET_NEGOTIATION_SERVER}.get(port)
        probes: list[tuple[bytes, bytes]]
        if port in (80, 8000, 8008, 5000):
            page = http_response(200, html_page(rng, rng.randint(300, 3000)), "lighttpd/1.4.59", keep_alive=False)
            probes = [(b"GET / HTTP/1.0\r\n\r\n", page),
                      (b"OPTIONS / HTTP/1.0\r\n\r\n", http_response(405, b"", "lighttpd/1.4.59", keep_alive=False))]
        elif port == 554:
            probes = [(b"OPTIONS / RTSP/1.0\r\n\r\n", b"RTSP/1.0 200 OK\r\nCSeq: 0\r\nPublic: OPTIONS, DESCRIBE, SETUP, "
                       b"TEARDOWN, PLAY\r\n\r\n")]
        elif port in (443, 8443, 8883, 5001, 8009):
            probes = [(tls_client_hello(rng, host, tls13=False, alpn=()), tls_server_flight(rng, False, 900))]
        elif port == 1883:
            probes = [(mqtt_connect("nmap-" + rng.randbytes(4).hex()), mqtt_connack(0))]
        else:
            probes = [(b"\r\n\r\n", rng.randbytes(rng.randint(20, 200)))]
        eph = pr.eph
        base, back = pr.rtt, pr.rtt_back
        if banner is not None:
            conn = TcpConn(ctx.wire, a, v, eph.next(), port, rtt_s=base, rtt_c=back)
            t = conn.handshake(t)
            t = conn.data(t + rng.uniform(1e-3, 0.02), 1, banner, ack="delayed")
            return conn.close(t + rng.uniform(0.01, 0.1), 0) + rng.uniform(0.01, 0.2)
        # NULL probe: connect and wait 5 s for a banner that never comes, then the payload probes
        conn = TcpConn(ctx.wire, a, v, eph.next(), port, rtt_s=base, rtt_c=back)
        t = conn.handshake(t)
        t = conn.close(t + 5.0 + rng.uniform(0, 0.01), 0)
        for req, resp in probes:
            conn = TcpConn(ctx.wire, a, v, eph.next(), port, rtt_s=base, rtt_c=back)
            t = conn.handshake(t + rng.uniform(1e-3, 0.05))
            t = conn.exchange(t + rng.uniform(1e-4, 1e-3), req, resp, server_time=rng.uniform(2e-4, 5e-3))
            t = conn.close(t + rng.uniform(1e-3, 0.05), 0)
        return t + rng.uniform(0.01, 0.2)

    @staticmethod
    def _probe_udp(ctx: Ctx, a, v, port: int, t: float) -> float:
        rng, w = ctx.rng, ctx.wire
        sport = rng.randint(32768, 65000)
        if port == 53:
            q = dns_query(rng.getrandbits(16), "version.bind", "TXT")
            q = q[:-2] + b"\x00\x03"                     # class CHAOS
            w.udp(t, a, v, sport, port, q)
            w.udp(t + rtt(rng, a, v), v, a, port, sport, dns_response(q, [("TXT", 0, b"\x0ednsmasq-2.85")]))
        else:
            w.udp(t, a, v, sport, port, rng.randbytes(rng.randint(8, 48)))
            if port in (1900, 5683, 123):
                w.udp(t + rtt(rng, a, v), v, a, port, sport, rng.randbytes(rng.randint(40, 300)))
        return t + rng.uniform(0.5, 1.5)

