"""Benign IoT traffic: MQTT telemetry, CoAP, DNS, NTP, HTTPS to clouds, local HTTP, SSH, and heavy bursts.

Background models run for the whole capture (devices publish, poll, resolve and sync clocks on their own
schedules); burst models are scheduled like attacks and are deliberately attack-sized: backups and
firmware downloads move tens of thousands of packets, an NVR pulls RTP video over UDP at hundreds of
packets per second — a detector must tell volume from malice.
"""

from __future__ import annotations

import json
import random

from packetclip.lab.network import Host, Network
from packetclip.lab.packets import ACK, PSH, RST
from packetclip.lab.protocols import (MQTT_PINGREQ, MQTT_PINGRESP, coap_content, coap_get, dns_query, dns_response,
                                      html_page, http_request, http_response, mqtt_connack, mqtt_connect,
                                      mqtt_puback, mqtt_publish, mqtt_suback, mqtt_subscribe, ntp_client, ntp_server,
                                      ssh_encrypted, tls_alert_close, tls_app_data, COAP_ACK, COAP_CON, COAP_NON)
from packetclip.lab.scenarios.base import (Ctx, Plan, Ports, Scenario, lognormal_bytes, poisson_times, rtt,
                                           scale_duration)
from packetclip.lab.scenarios.sessions import ssh_kex, tls_handshake
from packetclip.lab.tooldata import USER_AGENTS
from packetclip.lab.wire import TcpConn

CAPTURE_EPOCH = 1_678_000_000.0   # wall clock of t=0 inside payloads (NTP); the pcap epoch is set by SynthLab


def _whole(label: str, tool: str, start: float, end: float, params: dict) -> Plan:
    return Plan(label, tool, start, end, params)


def _telemetry(rng: random.Random, kind: str, t: float) -> bytes:
    doc = {"ts": int(CAPTURE_EPOCH + t)}
    if kind in ("temp-sensor", "thermostat"):
        doc.update(temp=round(rng.gauss(21.5, 1.5), 2), hum=round(rng.uniform(30, 60), 1))
    elif kind in ("smart-plug",):
        doc.update(power=round(rng.uniform(0, 1800), 1), voltage=round(rng.gauss(230, 2), 1), state="ON")
    elif kind in ("motion-sensor", "door-lock"):
        doc.update(occupancy=rng.random() < 0.2, battery=rng.randint(40, 100), linkquality=rng.randint(40, 255))
    else:
        doc.update(status="ok", rssi=rng.randint(-85, -40), uptime=int(t) + rng.randint(1000, 900000))
    if rng.random() < 0.3:
        doc["fw"] = "1.%d.%d" % (rng.randint(0, 9), rng.randint(0, 30))
    return json.dumps(doc, separators=(",", ":")).encode()


class MqttTelemetry(Scenario):
    name = "mqtt"

    def plan(self, rng, net, start, max_duration):
        publishers = [d for d in net.devices if d.stack.name == "lwip" or rng.random() < 0.5]
        params = {"publishers": [d.name for d in publishers], "keepalive": rng.choice([15, 30, 60, 60, 120]),
                  "interval_s": [rng.uniform(2, 10), rng.uniform(15, 90)], "qos1": round(rng.uniform(0, 0.6), 2)}
        return _whole("Benign", "mqtt pub/sub (devices -> broker -> home server)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        broker, hub = net.broker, net.nas
        by_name = {d.name: d for d in net.devices}
        # The home server subscribes to everything; its connection predates the capture.
        sub = TcpConn(w, hub, broker, Ports(rng, hub).next(), 1883, rtt_s=rtt(rng, hub, broker), rtt_c=rtt(rng, broker, hub))
        sub_events: list[tuple[float, bytes]] = []
        for name in p["publishers"]:
            dev = by_name[name]
            conn = TcpConn(w, dev, broker, Ports(rng, dev).next(), 1883, rtt_s=rtt(rng, dev, broker),
                           rtt_c=rtt(rng, broker, dev))
            interval = rng.uniform(*p["interval_s"])
            keepalive = p["keepalive"]
            qos = 1 if rng.random() < p["qos1"] else 0
            t = ctx.start + rng.uniform(0, interval)
            if rng.random() < 0.3:
                # The device (re)connects during the capture.
                t = conn.handshake(t)
                cid = f"{dev.kind}-{dev.mac[3:].hex()}"
                t = conn.exchange(t, mqtt_connect(cid, keepalive, username="iot" if rng.random() < 0.5 else None,
                                                  password="secret" if rng.random() < 0.3 else None), mqtt_connack())
                t += conn.jitter(0)
                if rng.random() < 0.5:
                    t = conn.exchange(t, mqtt_subscribe(1, [(f"cmd/{cid}/#", 1)]), mqtt_suback(1, [1]))
            last_sent = t
            pid = rng.randint(1, 60000)
            topic = f"home/{dev.kind}/{dev.mac[3:].hex()}/state"
            while t < ctx.end:
                if t - last_sent >= keepalive:
                    tp = last_sent + keepalive * rng.uniform(0.98, 1.0)
                    conn.exchange(tp, MQTT_PINGREQ, MQTT_PINGRESP, server_time=rng.uniform(1e-4, 1e-3))
                    last_sent = tp
                    continue
                payload = _telemetry(rng, dev.kind, t)
                pid = pid % 65535 + 1
                msg = mqtt_publish(topic, payload, qos=qos, packet_id=pid)
                if qos:
                    conn.exchange(t, msg, mqtt_puback(pid), server_time=rng.uniform(1e-4, 2e-3))
                else:
                    conn.data(t, 0, msg, ack="delayed")
                sub_events.append((t + rng.uniform(2e-4, 3e-3), mqtt_publish(topic, payload)))
                last_sent = t
                t += interval * rng.uniform(0.9, 1.1)
        sub_events.sort(key=lambda e: e[0])
        for te, msg in sub_events:
            if te < ctx.end:
                sub.data(te, 1, msg, ack="delayed")


class CoapDevices(Scenario):
    name = "coap"

    def plan(self, rng, net, start, max_duration):
        devs = [d.name for d in net.devices if 5683 in d.udp_ports]
        params = {"devices": devs, "poll_s": [rng.uniform(5, 20), rng.uniform(30, 120)], "observe": rng.random() < 0.6}
        return _whole("Benign", "coap get/observe (hub <-> devices)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        hub = net.broker
        by_name = {d.name: d for d in net.devices}
        for name in p["devices"]:
            dev = by_name[name]
            r = rtt(rng, hub, dev)
            sport = rng.randint(40000, 60000)
            mid = rng.randrange(65536)
            token = rng.randbytes(rng.choice([2, 4, 8]))
            period = rng.uniform(*p["poll_s"])
            path = rng.choice(["sensors/temp", "state", "power", "status", "light/1"])
            observe = p["observe"] and rng.random() < 0.5
            t = ctx.start + rng.uniform(0, period)
            seq = rng.randint(2, 1000)
            if observe:
                w.udp(t, hub, dev, sport, 5683, coap_get(mid, token, path, observe=True))
                t += r
                w.udp(t, dev, hub, 5683, sport, coap_content(COAP_ACK, mid, token, _telemetry(rng, dev.kind, t), seq))
                while True:
                    t += period * rng.uniform(0.8, 1.2)
                    if t >= ctx.end:
                        break
                    seq += 1
                    mid = (mid + 1) & 0xFFFF
                    con = rng.random() < 0.2
                    w.udp(t, dev, hub, 5683, sport, coap_content(COAP_CON if con else COAP_NON, mid, token,
                                                                 _telemetry(rng, dev.kind, t), seq))
                    if con:
                        w.udp(t + r, hub, dev, sport, 5683, bytes([0x60, 0x00]) + mid.to_bytes(2, "big"))
            else:
                while t < ctx.end:
                    mid = (mid + 1) & 0xFFFF
                    token = rng.randbytes(len(token))
                    w.udp(t, hub, dev, sport, 5683, coap_get(mid, token, path))
                    w.udp(t + r * rng.uniform(0.8, 1.5), dev, hub, 5683, sport,
                          coap_content(COAP_ACK, mid, token, _telemetry(rng, dev.kind, t)))
                    t += period * rng.uniform(0.9, 1.1)


def _resolve(w, rng, client: Host, server: Host, name: str, t: float, ip: bytes, sport: int, *, aaaa: bool,
             cached: bool) -> float:
    """A/AAAA lookup through the gateway's resolver; returns when the answer arrived.

    Answers look like those of cloud endpoints: often a CNAME chain to a CDN / load balancer and several
    A records (ELBs and CDNs hand out 2-8); AAAA lookups find addresses for about half of the names.
    Stub resolvers of full OSes (systemd-resolved, Windows, macOS) add EDNS0; lwIP and old embedded libcs do not.
    """
    from packetclip.lab.protocols import dns_name

    delay = rng.uniform(0.0002, 0.002) if cached else rng.uniform(0.01, 0.08)
    edns = client.stack.name in ("linux5", "windows10", "windows7", "macos") and rng.random() < 0.8
    q = dns_query(rng.getrandbits(16), name, "A", edns=edns)
    w.udp(t, client, server, sport, 53, q)
    chain = []
    for _ in range(rng.choices([0, 1, 2], [45, 40, 15])[0]):
        target = rng.choice(["d" + rng.randbytes(6).hex()[:13] + ".cloudfront.net",
                             f"{rng.choice(['prod', 'iot', 'api'])}-{rng.randbytes(4).hex()}.elb.amazonaws.com",
                             f"e{rng.randint(1000, 9999)}.a.akamaiedge.net", name.split(".")[0] + ".edgekey.net"])
        chain.append(("CNAME", rng.randint(60, 3600), dns_name(target)))
    n_a = rng.choices([1, 2, 3, 4, 6, 8], [35, 20, 10, 20, 5, 10])[0]
    ttl = rng.randint(20, 300)
    addrs = [ip] + [bytes([ip[0], ip[1], rng.randrange(256), rng.randint(1, 254)]) for _ in range(n_a - 1)]
    answers = chain + [("A", ttl, a) for a in addrs]
    w.udp(t + delay, server, client, 53, sport, dns_response(q, answers))
    if aaaa:
        q6 = dns_query(rng.getrandbits(16), name, "AAAA", edns=edns)
        w.udp(t + 2e-5, client, server, sport, 53, q6)
        if rng.random() < 0.5:
            six = [("AAAA", ttl, bytes([0x26, 0x00, 0x1f, 0x18]) + rng.randbytes(12)) for _ in range(rng.choice([1, 2, 4]))]
            resp6 = dns_response(q6, chain + six)
        else:
            resp6 = dns_response(q6, chain, authority_soa=rng.random() < 0.7, rng=rng)
        w.udp(t + delay + 1e-4, server, client, 53, sport, resp6)
    return t + delay


class DnsAndNtp(Scenario):
    name = "dns-ntp"

    def plan(self, rng, net, start, max_duration):
        params = {"dns_rate_per_device_per_min": round(rng.uniform(1.0, 6.0), 2), "ntp_period_s": rng.choice([64, 128, 256, 1024]),
                  "local_ntp": rng.random() < 0.4}
        return _whole("Benign", "dns lookups + ntp sync", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        clients = [*net.devices, *net.admins, net.broker, net.nas]
        for c in clients:
            ports = Ports(rng, c)
            rate = p["dns_rate_per_device_per_min"] / 60.0 * (3.0 if c.kind in ("workstation", "smart-tv", "smart-speaker") else 1.0)
            for t in poisson_times(rng, ctx.start, ctx.end, rate):
                svc = rng.choice(net.cloud)
                _resolve(w, rng, c, net.gateway, svc.hostname, t, svc.ip, ports.next(),
                         aaaa=c.stack.name not in ("lwip", "embedded"), cached=rng.random() < 0.5)
            server = net.gateway if p["local_ntp"] else net.ntp_server
            period = p["ntp_period_s"] * rng.uniform(0.5, 2.0)
            t = ctx.start + rng.uniform(0, period)
            sport = 123 if c.stack.name not in ("lwip",) and rng.random() < 0.5 else ports.next()
            while t < ctx.end:
                req = ntp_client(CAPTURE_EPOCH + t)
                w.udp(t, c, server, sport, 123, req)
                r = rtt(rng, c, server)
                w.udp(t + r, server, c, 123, sport, ntp_server(req, CAPTURE_EPOCH + t + r / 2, CAPTURE_EPOCH + t + r / 2 + 2e-5))
                t += period * rng.uniform(0.95, 1.05)


def https_session(ctx: Ctx, client: Host, server: Host, t: float, *, exchanges: int, resp_median: int,
                  big: int | None = None, rate_bps: float = 30e6, port: int = 443, sni: str | None = None) -> float:
    """One HTTPS connection: TCP + TLS handshake, request/response records, close_notify + FIN (or RST)."""
    rng, w = ctx.rng, ctx.wire
    conn = TcpConn(w, client, server, Ports(rng, client).next(), port, rtt_s=rtt(rng, client, server),
                   rtt_c=rtt(rng, server, client))
    tls13 = rng.random() < 0.6
    t = conn.handshake(t)
    t = tls_handshake(conn, t + rng.uniform(1e-5, 5e-4), rng, sni or server.hostname or "cloud.example.com",
                      tls13=tls13, cert_bytes=rng.choice([1800, 2600, 3400, 4200, 5100]),
                      server_time=rng.uniform(0.001, 0.02))
    for i in range(exchanges):
        if t >= ctx.end:
            break
        req = tls_app_data(rng, lognormal_bytes(rng, 450, 0.7, 60, 8000), tls13)
        size = big if (big and i == exchanges - 1) else lognormal_bytes(rng, resp_median, 1.2, 30, 3_000_000)
        t = conn.exchange(t, req, tls_app_data(rng, size, tls13), server_time=rng.uniform(0.002, 0.08),
                          rate_bps=rate_bps)
        t += rng.expovariate(1 / 2.0) if i < exchanges - 1 else rng.uniform(0.01, 0.3)
    r = rng.random()
    if r < 0.75:
        t = conn.data(t, 0, tls_alert_close(rng, tls13), ack="none")
        return conn.close(t + rng.uniform(1e-5, 1e-3), 0)
    if r < 0.9:
        # keep-alive expired on the server side
        t += rng.uniform(5.0, 65.0)
        if t < ctx.end:
            conn.close(t, 1)
        return t
    conn.send(t + rng.uniform(0.01, 1.0), 0, RST | ACK, window=0)
    return t


class HttpsCloud(Scenario):
    name = "https"

    def plan(self, rng, net, start, max_duration):
        params = {"sessions_per_device_per_min": round(rng.uniform(0.2, 1.5), 2), "resp_median": rng.choice([800, 1500, 3000, 6000])}
        return _whole("Benign", "https to cloud services (tls 1.2/1.3)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net = ctx.rng, ctx.net
        p = ctx.params
        clients = [d for d in net.devices if d.kind not in ("light-bulb", "door-lock", "motion-sensor")] + net.admins
        for c in clients:
            heavy = c.kind in ("workstation", "smart-tv", "smart-speaker")
            rate = p["sessions_per_device_per_min"] / 60.0 * (4.0 if heavy else 1.0)
            for t in poisson_times(rng, ctx.start, ctx.end, rate):
                svc = rng.choice(net.cloud)
                https_session(ctx, c, svc, t, exchanges=rng.randint(1, 12 if heavy else 4),
                              resp_median=p["resp_median"] * (4 if heavy else 1))


class LocalHttp(Scenario):
    name = "http"

    def plan(self, rng, net, start, max_duration):
        params = {"page_loads_per_min": round(rng.uniform(0.2, 2.0), 2), "checks_per_min": round(rng.uniform(0.5, 3.0), 2)}
        return _whole("Benign", "http (admin web UIs, connectivity checks)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        webs = net.web_servers()
        for t in poisson_times(rng, ctx.start, ctx.end, p["page_loads_per_min"] / 60.0):
            admin = rng.choice(net.admins)
            srv = rng.choice(webs)
            ua = rng.choice(USER_AGENTS)
            host = ".".join(map(str, srv.ip))
            n_conn = rng.randint(1, 6)
            objects = ["/"] + [f"/static/{rng.choice(['app', 'main', 'vendor', 'style', 'logo'])}.{rng.choice(['js', 'css', 'png'])}"
                               for _ in range(rng.randint(2, 20))]
            ports = Ports(rng, admin)
            for k in range(n_conn):
                conn = TcpConn(w, admin, srv, ports.next(), 80, rtt_s=rtt(rng, admin, srv), rtt_c=rtt(rng, srv, admin))
                tc = conn.handshake(t + k * rng.uniform(1e-4, 5e-3) + (0 if k == 0 else 0.05))
                for path in objects[k::n_conn]:
                    body = html_page(rng, lognormal_bytes(rng, 4000, 1.3, 200, 400_000), "UI")
                    status = 200 if rng.random() < 0.85 else 304
                    tc = conn.exchange(tc, http_request("GET", path, host, ua, [("Accept-Encoding", "gzip, deflate")]),
                                       http_response(status, body if status == 200 else b"", "lighttpd/1.4.59"),
                                       server_time=rng.uniform(0.001, 0.03))
                    tc += rng.uniform(0.001, 0.05)
                conn.close(tc + rng.uniform(1.0, 15.0), rng.choice([0, 1]))
        for c in net.devices:
            if c.stack.name == "lwip":
                continue
            for t in poisson_times(rng, ctx.start, ctx.end, p["checks_per_min"] / 60.0 / 4):
                srv = next(h for h in net.cloud if h.hostname.startswith("connectivitycheck"))
                conn = TcpConn(w, c, srv, Ports(rng, c).next(), 80, rtt_s=rtt(rng, c, srv), rtt_c=rtt(rng, srv, c))
                tc = conn.handshake(t)
                tc = conn.exchange(tc, http_request("GET", "/generate_204", srv.hostname, "Dalvik/2.1.0 (Linux; U; Android 9)",
                                                    keep_alive=False),
                                   http_response(204, b"", "HTTP server (unknown)", keep_alive=False),
                                   server_time=rng.uniform(0.002, 0.01))
                conn.close(tc + rng.uniform(1e-4, 2e-3), 1)


class SshInteractive(Scenario):
    name = "ssh-interactive"

    def plan(self, rng, net, start, max_duration):
        duration = scale_duration(rng, 30, 300, max_duration)
        srv = rng.choice([net.nas, net.broker, net.gateway])
        params = {"server": srv.name, "keystroke_ms": [rng.uniform(60, 120), rng.uniform(150, 400)],
                  "commands": rng.randint(3, 40)}
        return Plan("Benign", "ssh interactive session", start, start + duration, params, [], [])

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        admin = rng.choice(net.admins)
        srv = {h.name: h for h in net.servers}[p["server"]]
        conn = TcpConn(w, admin, srv, Ports(rng, admin).next(), 22, rtt_s=rtt(rng, admin, srv), rtt_c=rtt(rng, srv, admin))
        t = conn.handshake(ctx.start)
        t = ssh_kex(conn, t, rng)
        # public key auth succeeds, session channel, pty, shell
        for size_c, size_s in ((60, 40), (420, 20), (100, 30), (90, 20), (30, 600)):
            conn.data(t, 0, ssh_encrypted(rng, size_c), ack="none")
            t += conn.jitter(1) + rng.uniform(0.001, 0.02)
            t = conn.data(t, 1, ssh_encrypted(rng, size_s), ack="delayed") + rng.uniform(0.01, 0.1)
        lo, hi = p["keystroke_ms"]
        for _ in range(p["commands"]):
            if t >= ctx.end:
                break
            for _ in range(rng.randint(2, 30)):
                conn.data(t, 0, ssh_encrypted(rng, 8), ack="none")          # one keystroke
                t += conn.jitter(1)
                conn.data(t, 1, ssh_encrypted(rng, 8), ack="none")          # its echo
                conn.send(t + conn.jitter(0), 0, ACK)
                t += rng.uniform(lo, hi) / 1000.0
            out = lognormal_bytes(rng, 600, 1.5, 20, 200_000)
            t = conn.data(t + conn.jitter(1) + rng.uniform(0.002, 0.3), 1, ssh_encrypted(rng, out), ack="delayed")
            t += rng.uniform(1.0, 12.0)
        conn.data(t, 0, ssh_encrypted(rng, 30), ack="none")
        conn.close(t + conn.jitter(1), 1)


class BulkTransfer(Scenario):
    """Backups to the NAS over SSH and firmware downloads over HTTPS: benign, but flood-sized."""

    name = "bulk"

    def plan(self, rng, net, start, max_duration):
        kind = rng.choice(["backup-scp", "firmware-https", "nvr-rtp"])
        duration = scale_duration(rng, 20, 120, max_duration)
        params = {"kind": kind}
        if kind == "backup-scp":
            params.update(megabytes=round(rng.uniform(3, 25), 1), rate_mbps=round(rng.uniform(40, 300), 1))
        elif kind == "firmware-https":
            params.update(megabytes=round(rng.uniform(2, 15), 1), rate_mbps=round(rng.uniform(5, 60), 1))
        else:
            params.update(pps=rng.randint(90, 350), payload=rng.choice([1200, 1316, 1400]))
        return Plan("Benign", {"backup-scp": "scp backup to nas", "firmware-https": "firmware download (https)",
                               "nvr-rtp": "nvr recording (rtsp/rtp)"}[kind], start, start + duration, params)

    def run(self, ctx: Ctx) -> None:
        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        if p["kind"] == "backup-scp":
            admin = rng.choice(net.admins)
            conn = TcpConn(w, admin, net.nas, Ports(rng, admin).next(), 22, rtt_s=rtt(rng, admin, net.nas),
                           rtt_c=rtt(rng, net.nas, admin))
            t = ssh_kex(conn, conn.handshake(ctx.start), rng)
            nbytes = int(p["megabytes"] * 1e6)
            rate = p["rate_mbps"] * 1e6
            # stream in 32 KiB SSH channel packets so the timing stays bounded by the episode
            chunk = 32768
            sent = 0
            while sent < nbytes and t < ctx.end + 5:
                t = conn.data(t, 0, ssh_encrypted(rng, chunk), rate_bps=rate, ack="delayed")
                sent += chunk
                t += (chunk + 100) * 8 / rate * rng.uniform(0.0, 0.2)
            conn.data(t, 0, ssh_encrypted(rng, 30), ack="none")
            conn.close(t + 0.001, 1)
        elif p["kind"] == "firmware-https":
            dev = rng.choice([d for d in net.devices if d.stack.name != "lwip"] or net.devices)
            cdn = next(h for h in net.cloud if "fw" in h.hostname or "firmware" in h.hostname)
            https_session(ctx, dev, cdn, ctx.start, exchanges=2, resp_median=900, big=int(p["megabytes"] * 1e6),
                          rate_bps=p["rate_mbps"] * 1e6)
        else:
            cams = net.devices_of("ip-camera") or net.devices
            cam = rng.choice(cams)
            nvr = net.nas
            # RTSP setup over TCP 554, then RTP/UDP from the camera
            conn = TcpConn(w, nvr, cam, Ports(rng, nvr).next(), 554, rtt_s=rtt(rng, nvr, cam), rtt_c=rtt(rng, cam, nvr))
            t = conn.handshake(ctx.start)
            url = f"rtsp://{'.'.join(map(str, cam.ip))}:554/Streaming/Channels/101"
            for method, reply in (("OPTIONS", 160), ("DESCRIBE", 620), ("SETUP", 240), ("PLAY", 210)):
                req = f"{method} {url} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: LibVLC/3.0.18\r\n\r\n".encode()
                t = conn.exchange(t, req, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n" + b"x" * reply + b"\r\n\r\n")
            sport, dport = rng.randrange(8000, 9000, 2), rng.randrange(50000, 60000, 2)
            rtp_seq, rtp_ts, ssrc = rng.randrange(65536), rng.getrandbits(32), rng.getrandbits(32)
            step = 1.0 / p["pps"]
            while t < ctx.end:
                frame_pkts = rng.choice([1, 2, 3, 3, 4, 12])
                for k in range(frame_pkts):
                    marker = 0x80 if k == frame_pkts - 1 else 0
                    hdr = bytes([0x80, marker | 96]) + rtp_seq.to_bytes(2, "big") + rtp_ts.to_bytes(4, "big") + ssrc.to_bytes(4, "big")
                    size = p["payload"] if k < frame_pkts - 1 else rng.randint(200, p["payload"])
                    w.udp(t, cam, nvr, sport, dport, hdr + rng.randbytes(size - 12))
                    rtp_seq = (rtp_seq + 1) & 0xFFFF
                    t += rng.uniform(20e-6, 200e-6)
                rtp_ts = (rtp_ts + 3600) & 0xFFFFFFFF
                t += step * frame_pkts * rng.uniform(0.7, 1.3)
            conn.exchange(t, f"TEARDOWN {url} RTSP/1.0\r\nCSeq: 5\r\n\r\n".encode(), b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n")


def _group(name: str, ip: str, mac: str, stack) -> Host:
    return Host(name, "multicast", bytes(int(x) for x in ip.split(".")), bytes.fromhex(mac), stack)


class Discovery(Scenario):
    """SSDP M-SEARCH / mDNS queries to their multicast groups and the unicast answers; ICMP health pings."""

    name = "discovery"

    def plan(self, rng, net, start, max_duration):
        params = {"ssdp_period_s": round(rng.uniform(20, 180), 1), "mdns_period_s": round(rng.uniform(30, 300), 1),
                  "ping_period_s": round(rng.uniform(10, 90), 1), "ping_monitor": rng.random() < 0.8}
        return _whole("Benign", "ssdp/mdns discovery + icmp health checks", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        from packetclip.lab.tooldata import NMAP_UDP_PAYLOADS  # the standard M-SEARCH text

        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        ssdp = _group("ssdp", "239.255.255.250", "01005e7ffffa", net.gateway.stack)
        mdns = _group("mdns", "224.0.0.251", "01005e0000fb", net.gateway.stack)
        searchers = net.devices_of("smart-tv", "smart-speaker") + net.admins
        responders = [h for h in [net.gateway, *net.devices] if 1900 in h.udp_ports]
        for c in searchers:
            ports = Ports(rng, c)
            t = ctx.start + rng.uniform(0, p["ssdp_period_s"])
            while t < ctx.end:
                sport = ports.next()
                for k in range(rng.choice([1, 2, 3])):
                    w.udp(t + k * 0.1, c, ssdp, sport, 1900, NMAP_UDP_PAYLOADS[1900], ttl=rng.choice([1, 2, 4]))
                for r in responders:
                    if r is c:
                        continue
                    loc = f"http://{'.'.join(map(str, r.ip))}:{rng.choice([49152, 8008, 1400, 80])}/description.xml"
                    body = (f"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: {loc}\r\n"
                            f"SERVER: Linux/3.14 UPnP/1.0 IpBridge/1.50.0\r\nST: upnp:rootdevice\r\n"
                            f"USN: uuid:{rng.randbytes(16).hex()}::upnp:rootdevice\r\n\r\n").encode()
                    w.udp(t + rng.uniform(0.01, 1.0), r, c, 1900, sport, body)
                t += p["ssdp_period_s"] * rng.uniform(0.8, 1.2)
        for c in [*net.devices_of("smart-tv", "smart-speaker"), *net.admins, net.broker]:
            t = ctx.start + rng.uniform(0, p["mdns_period_s"])
            while t < ctx.end:
                svc = rng.choice(["_googlecast._tcp.local", "_airplay._tcp.local", "_hap._tcp.local",
                                  "_spotify-connect._tcp.local", "_printer._tcp.local", "_hue._tcp.local"])
                q = dns_query(0, svc, "PTR", rd=False)
                w.udp(t, c, mdns, 5353, 5353, q, ttl=255)
                if rng.random() < 0.6:
                    ans = dns_response(q, [("PTR", 120, dns_name_bytes(rng.randbytes(4).hex() + "." + svc))], ra=False)
                    w.udp(t + rng.uniform(0.02, 0.12), rng.choice(net.devices), mdns, 5353, 5353, ans, ttl=255)
                t += p["mdns_period_s"] * rng.uniform(0.8, 1.2)
        if p["ping_monitor"]:
            mon = net.nas
            for d in [net.gateway, *net.devices]:
                ident = rng.getrandbits(16)
                seq = 1
                t = ctx.start + rng.uniform(0, p["ping_period_s"])
                r = rtt(rng, mon, d)
                while t < ctx.end:
                    payload = int(CAPTURE_EPOCH + t).to_bytes(8, "little") + bytes(range(0x10, 0x38))
                    w.icmp(t, mon, d, 8, 0, (ident << 16) | seq, payload)
                    if not (d.firewalled and rng.random() < 0.5):
                        w.icmp(t + r * rng.uniform(0.8, 1.5), d, mon, 0, 0, (ident << 16) | seq, payload, df=False)
                    seq += 1
                    t += p["ping_period_s"] * rng.uniform(0.95, 1.05)


def dns_name_bytes(name: str) -> bytes:
    from packetclip.lab.protocols import dns_name

    return dns_name(name)


class FailedConnections(Scenario):
    """What every real network has: connects to dead cloud endpoints (SYN retransmissions, no answer) and to
    closed local ports (RST/ACK) — single-SYN flows that are not scans."""

    name = "failed-connections"

    def plan(self, rng, net, start, max_duration):
        params = {"dead_per_min": round(rng.uniform(0.2, 3.0), 2), "refused_per_min": round(rng.uniform(0.2, 2.0), 2)}
        return _whole("Benign", "failed connections (timeouts, refused)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        from packetclip.lab.network import random_public_ip

        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        for t in poisson_times(rng, ctx.start, ctx.end, p["dead_per_min"] / 60.0):
            c = rng.choice([*net.devices, *net.admins])
            dead = net.remote_host(rng, ip=random_public_ip(rng))
            conn = TcpConn(w, c, dead, Ports(rng, c).next(), rng.choice([443, 443, 80, 8883, 1883]), rtt_s=0.05)
            isn = conn.seq[0]
            for delay in (0.0, 1.0, 3.0, 7.0)[: rng.randint(1, 4)]:
                conn.seq[0] = isn
                conn.syn(t + delay * rng.uniform(0.98, 1.03))
        for t in poisson_times(rng, ctx.start, ctx.end, p["refused_per_min"] / 60.0):
            c = rng.choice([*net.admins, net.broker, net.nas])
            srv = rng.choice([net.gateway, *net.devices])
            port = rng.choice([8080, 8443, 8000, 8081, 9000, 5000, 81, 8888])
            if srv.is_open(6, port):
                continue
            conn = TcpConn(w, c, srv, Ports(rng, c).next(), port, rtt_s=rtt(rng, c, srv))
            conn.syn(t)
            w.tcp(t + rtt(rng, c, srv), srv, c, port, conn.ports[0][0], 0, conn.seq[0], RST | ACK, 0, df=True, ident=0)


class WebBrowsing(Scenario):
    """People on the admin machines browsing the web: bursts of parallel HTTPS/HTTP connections."""

    name = "web-browsing"

    def plan(self, rng, net, start, max_duration):
        params = {"pages_per_min": round(rng.uniform(0.3, 3.0), 2), "plain_http": round(rng.uniform(0.05, 0.3), 2)}
        return _whole("Benign", "web browsing (admin machines)", start, start + max_duration, params)

    def run(self, ctx: Ctx) -> None:
        from packetclip.lab.network import random_public_ip

        rng, net, w = ctx.rng, ctx.net, ctx.wire
        p = ctx.params
        for t in poisson_times(rng, ctx.start, ctx.end, p["pages_per_min"] / 60.0):
            user = rng.choice(net.admins)
            sites = [net.remote_host(rng, name="web", stack=rng.choice(["linux4", "linux5"])) for _ in range(rng.randint(1, 6))]
            for site in sites:
                site.tcp_ports = frozenset({80, 443})
                site.hostname = rng.choice(["www.", "cdn.", "static.", "api.", "img."]) + rng.randbytes(3).hex() + ".com"
                for k in range(rng.randint(1, 4)):
                    start = t + rng.uniform(0, 1.5)
                    if rng.random() < p["plain_http"]:
                        conn = TcpConn(w, user, site, Ports(rng, user).next(), 80, rtt_s=rtt(rng, user, site),
                                       rtt_c=rtt(rng, site, user))
                        tc = conn.handshake(start)
                        for _ in range(rng.randint(1, 8)):
                            body = html_page(rng, lognormal_bytes(rng, 9000, 1.4, 200, 2_000_000), "page")
                            tc = conn.exchange(tc, http_request("GET", "/" + rng.randbytes(4).hex(), site.hostname,
                                                                rng.choice(USER_AGENTS)),
                                               http_response(200, body, rng.choice(["nginx", "Apache", "cloudflare"])),
                                               server_time=rng.uniform(0.005, 0.2))
                            tc += rng.uniform(0.01, 3.0)
                        conn.close(tc + rng.uniform(5, 60), rng.choice([0, 1]))
                    else:
                        https_session(ctx, user, site, start, exchanges=rng.randint(1, 15), resp_median=5000,
                                      sni=site.hostname)
        del random_public_ip


BACKGROUND = [MqttTelemetry(), CoapDevices(), DnsAndNtp(), HttpsCloud(), LocalHttp(), Discovery(),
              FailedConnections(), WebBrowsing()]
BURSTS = [SshInteractive(), BulkTransfer()]
