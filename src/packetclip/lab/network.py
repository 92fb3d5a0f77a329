"""The simulated IoT network: hosts with addresses, MACs, TCP/IP stack fingerprints and open services.

A flow classifier learns from TTLs, window sizes and TCP options as much as from timing, so every host
carries the stack of the OS it pretends to be (Linux 4.x/5.x, Windows 10, macOS, lwIP on ESP32 devices,
OpenWrt), and hosts on the Internet are seen behind the gateway's MAC with their TTL reduced by the
hops on the way. Everything is drawn from the episode seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from packetclip.lab.packets import (OPT_EOL, OPT_NOP, OPT_SACK_PERM, PROTO_TCP, PROTO_UDP, ip4, opt_mss,
                                    opt_timestamp, opt_wscale)


@dataclass(frozen=True)
class StackProfile:
    """What an OS puts in the headers it sends: TTL, SYN window and options, established windows."""

    name: str
    ttl: int
    syn_window: int
    synack_window: int
    mss: int = 1460
    wscale: int | None = 7
    sack: bool = True
    timestamps: bool = True
    est_window: tuple[int, int] = (227, 502)   # raw window field range once established (scaled)
    style: str = "linux"                       # option order: linux / windows / macos / lwip
    ts_hz: int = 1000

    def syn_options(self, tsval: int) -> bytes:
        if self.style == "linux":
            return (opt_mss(self.mss) + OPT_SACK_PERM + opt_timestamp(tsval, 0) + OPT_NOP
                    + opt_wscale(self.wscale or 0))
        if self.style == "windows":
            return opt_mss(self.mss) + OPT_NOP + opt_wscale(self.wscale or 0) + OPT_NOP + OPT_NOP + OPT_SACK_PERM
        if self.style == "macos":
            return (opt_mss(self.mss) + OPT_NOP + opt_wscale(self.wscale or 0) + OPT_NOP + OPT_NOP
                    + opt_timestamp(tsval, 0) + OPT_SACK_PERM + OPT_EOL + OPT_EOL)
        return opt_mss(self.mss)  # lwIP: MSS only

    def synack_options(self, tsval: int, tsecr: int | None, peer_sack: bool, peer_ws: bool) -> bytes:
        """SYN/ACK options: a stack only echoes what the SYN offered (RFC 7323, RFC 2018)."""
        ts = self.timestamps and tsecr is not None
        ws = self.wscale is not None and peer_ws
        sack = self.sack and peer_sack
        if self.style in ("linux", "macos"):
            out = opt_mss(self.mss)
            if sack and ts:
                out += OPT_SACK_PERM + opt_timestamp(tsval, tsecr)
            elif ts:
                out += OPT_NOP + OPT_NOP + opt_timestamp(tsval, tsecr)
            elif sack:
                out += OPT_NOP + OPT_NOP + OPT_SACK_PERM
            if ws:
                out += OPT_NOP + opt_wscale(self.wscale)
            return out
        if self.style == "windows":
            out = opt_mss(self.mss)
            if ws:
                out += OPT_NOP + opt_wscale(self.wscale)
            if sack:
                out += OPT_NOP + OPT_NOP + OPT_SACK_PERM
            return out
        return opt_mss(self.mss)

    @property
    def uses_timestamps(self) -> bool:
        return self.timestamps and self.style in ("linux", "macos")


STACKS: dict[str, StackProfile] = {
    # Debian/Ubuntu/Kali with a 4.x kernel (the CIC-IDS2017 era): SYN 29200, SYN/ACK 28960.
    "linux4": StackProfile("linux4", 64, 29200, 28960, est_window=(227, 245)),
    # 5.x/6.x kernels: SYN 64240, SYN/ACK 65160.
    "linux5": StackProfile("linux5", 64, 64240, 65160, est_window=(501, 510)),
    # OpenWrt routers, small Linux boxes.
    "openwrt": StackProfile("openwrt", 64, 29200, 28960, wscale=4, est_window=(1825, 1900)),
    # Embedded Linux (IP cameras, NVRs): old kernels, small buffers.
    "embedded": StackProfile("embedded", 64, 5840, 5792, wscale=2, est_window=(1448, 1460)),
    "windows10": StackProfile("windows10", 128, 64240, 65535, wscale=8, timestamps=False,
                              est_window=(1026, 8212), style="windows"),
    # Windows 7 / Server 2008 era clients (still common on office and lab networks): SYN window 8192.
    "windows7": StackProfile("windows7", 128, 8192, 8192, wscale=2, timestamps=False, est_window=(256, 16425),
                             style="windows"),
    "macos": StackProfile("macos", 64, 65535, 65535, wscale=6, est_window=(2048, 4096), style="macos"),
    # lwIP on ESP32/ESP8266 sensors and plugs.
    "lwip": StackProfile("lwip", 64, 5744, 5744, mss=1436, wscale=None, sack=False, timestamps=False,
                         est_window=(5744, 5744), style="lwip"),
}


@dataclass
class Host:
    """One address on the wire. ``hops`` > 0 means it sits on the Internet, behind the gateway."""

    name: str
    kind: str
    ip: bytes
    mac: bytes
    stack: StackProfile
    tcp_ports: frozenset[int] = frozenset()
    udp_ports: frozenset[int] = frozenset()
    hops: int = 0
    firewalled: bool = False          # drops probes to closed ports instead of answering RST
    ts_base: int = 0                  # TCP timestamp clock at t=0
    hostname: str = ""

    @property
    def local(self) -> bool:
        return self.hops == 0

    @property
    def ttl(self) -> int:
        return self.stack.ttl - self.hops

    def is_open(self, proto: int, port: int) -> bool:
        return port in (self.tcp_ports if proto == PROTO_TCP else self.udp_ports)

    def tsval(self, t: float) -> int:
        return (self.ts_base + int(t * self.stack.ts_hz)) & 0xFFFFFFFF


# MAC prefixes (OUIs) of vendors common in homes and labs; the lower 3 bytes are drawn per host.
OUIS = {
    "espressif": (0x24, 0x0A, 0xC4), "espressif2": (0x84, 0xCC, 0xA8), "raspberrypi": (0xB8, 0x27, 0xEB),
    "raspberrypi4": (0xDC, 0xA6, 0x32), "tplink": (0x50, 0xC7, 0xBF), "hikvision": (0x44, 0x19, 0xB6),
    "amazon": (0x44, 0x65, 0x0D), "google": (0x54, 0x60, 0x09), "philips": (0x00, 0x17, 0x88),
    "samsung": (0xD0, 0x52, 0xA8), "synology": (0x00, 0x11, 0x32), "intel": (0x3C, 0xA9, 0xF4),
    "apple": (0xA4, 0x83, 0xE7), "dell": (0x18, 0x66, 0xDA), "netgear": (0xA0, 0x40, 0xA0),
    "ring": (0x34, 0x3E, 0xA4), "sonos": (0x5C, 0xAA, 0xFD), "xiaomi": (0x78, 0x11, 0xDC),
}

# Cloud endpoints IoT devices talk to (name, first octets of a plausible address block).
CLOUD_SERVICES = [
    ("a3k7odshaiipe8-ats.iot.us-east-1.amazonaws.com", (52, 94)),
    ("device-metrics-us.amazon.com", (54, 239)),
    ("api.smartthings.com", (52, 14)),
    ("firmware.tplinkcloud.com", (3, 120)),
    ("euw.iot.tuya.com", (18, 185)),
    ("time.cloudflare.com", (162, 159)),
    ("connectivitycheck.gstatic.com", (142, 250)),
    ("mqtt.eclipseprojects.io", (137, 135)),
    ("updates.hikvision.com", (47, 88)),
    ("diag.meethue.com", (35, 157)),
    ("fw.ota.example-iot.net", (104, 18)),
    ("cdn.sonos.com", (23, 52)),
]

# Device archetypes: (kind, OUI choices, stacks, TCP services, UDP services).
DEVICE_TYPES = [
    ("temp-sensor", ("espressif", "espressif2"), ("lwip",), (), (5683,)),
    ("smart-plug", ("espressif", "tplink"), ("lwip",), (80,), (5683,)),
    ("light-bulb", ("philips", "xiaomi"), ("lwip",), (), (5683,)),
    ("ip-camera", ("hikvision", "tplink"), ("embedded", "linux4"), (80, 554, 8000), ()),
    ("smart-speaker", ("amazon", "google", "sonos"), ("linux4", "linux5"), (8008, 8009, 8443), (1900,)),
    ("thermostat", ("google", "ring"), ("linux4", "lwip"), (), ()),
    ("door-lock", ("samsung", "espressif"), ("lwip",), (), (5683,)),
    ("smart-tv", ("samsung", "google"), ("linux5",), (8001, 8002, 9197), (1900,)),
    ("air-purifier", ("xiaomi", "espressif"), ("lwip",), (), (54321,)),
    ("motion-sensor", ("espressif", "ring"), ("lwip",), (), (5683,)),
]


def _mac(rng: random.Random, oui_name: str) -> bytes:
    a, b, c = OUIS[oui_name]
    return bytes([a, b, c, rng.randrange(256), rng.randrange(256), rng.randrange(256)])


@dataclass
class Network:
    """All hosts of one lab capture, by role."""

    subnet: tuple[int, int, int]
    gateway: Host
    broker: Host
    nas: Host
    devices: list[Host]
    admins: list[Host]
    attackers: list[Host]
    cloud: list[Host]
    dns_upstream: Host
    ntp_server: Host
    domain: str
    extra: dict[str, Host] = field(default_factory=dict)

    @property
    def local_hosts(self) -> list[Host]:
        return [self.gateway, self.broker, self.nas, *self.devices, *self.admins, *self.attackers]

    @property
    def servers(self) -> list[Host]:
        return [self.gateway, self.broker, self.nas]

    def l2(self, src: Host, dst: Host) -> tuple[bytes, bytes]:
        """(src MAC, dst MAC) of a frame between two hosts as the LAN mirror port sees it."""
        return (src.mac if src.local else self.gateway.mac), (dst.mac if dst.local else self.gateway.mac)

    def devices_of(self, *kinds: str) -> list[Host]:
        return [d for d in self.devices if d.kind in kinds]

    def web_servers(self) -> list[Host]:
        return [h for h in [self.gateway, self.nas, *self.devices] if 80 in h.tcp_ports]

    def remote_host(self, rng: random.Random, *, name: str = "internet", stack: str | None = None,
                    ip: bytes | None = None) -> Host:
        """A host on the Internet (a spoofed source, a scanner, a client of an exposed service)."""
        if ip is None:
            ip = random_public_ip(rng)
        st = STACKS[stack or rng.choice(["linux4", "linux5", "windows10"])]
        return Host(name, "remote", ip, b"\x00" * 6, st, hops=rng.randint(6, 22), ts_base=rng.getrandbits(32))


def random_public_ip(rng: random.Random) -> bytes:
    """A random unicast address outside private, loopback, multicast and reserved ranges."""
    while True:
        a = rng.randint(1, 223)
        if a in (10, 127, 0, 100, 169, 172, 192, 198, 203):
            continue
        return bytes([a, rng.randrange(256), rng.randrange(256), rng.randint(1, 254)])


def build_network(rng: random.Random, *, n_devices: tuple[int, int] = (10, 20), n_attackers: tuple[int, int] = (1, 2)
                  ) -> Network:
    """Draw a home/lab IoT network: gateway, MQTT broker, NAS, 10-20 devices, admins, attackers, cloud."""
    if rng.random() < 0.6:
        subnet = (192, 168, rng.choice([0, 1, 1, 10, 50, 88, 100, 178]))
    else:
        subnet = (10, rng.randrange(256), rng.randrange(256))
    used: set[int] = set()

    def addr(prefer: int | None = None) -> bytes:
        n = prefer if prefer is not None and prefer not in used else None
        while n is None or n in used:
            n = rng.randint(2, 250)
        used.add(n)
        return bytes([*subnet, n])

    def ts_base() -> int:
        return rng.getrandbits(32)

    gateway = Host("gateway", "router", addr(1), _mac(rng, rng.choice(["tplink", "netgear"])), STACKS["openwrt"],
                   tcp_ports=frozenset({22, 53, 80, 443}), udp_ports=frozenset({53, 67, 123, 1900}),
                   ts_base=ts_base(), hostname="router")
    broker = Host("mqtt-broker", "broker", addr(), _mac(rng, rng.choice(["raspberrypi", "raspberrypi4"])),
                  STACKS[rng.choice(["linux4", "linux5"])],
                  tcp_ports=frozenset({22, 1883, 8883, 80}), udp_ports=frozenset({5683}), ts_base=ts_base(),
                  hostname="hub")
    nas = Host("nas", "nas", addr(), _mac(rng, rng.choice(["synology", "dell"])), STACKS[rng.choice(["linux4", "linux5"])],
               tcp_ports=frozenset({21, 22, 80, 111, 139, 443, 445, 2049, 5000, 5001}),
               udp_ports=frozenset({111, 137, 138, 2049}), firewalled=rng.random() < 0.3, ts_base=ts_base(),
               hostname="nas")
    devices = []
    n = rng.randint(*n_devices)
    for i in range(n):
        kind, ouis, stacks, tcp, udp = DEVICE_TYPES[i % len(DEVICE_TYPES)] if i < len(DEVICE_TYPES) else rng.choice(DEVICE_TYPES)
        tcp_ports = set(tcp)
        if kind == "ip-camera" and rng.random() < 0.6:
            tcp_ports.add(23)   # cheap cameras still ship telnet
        devices.append(Host(f"{kind}-{i}", kind, addr(), _mac(rng, rng.choice(ouis)), STACKS[rng.choice(stacks)],
                            tcp_ports=frozenset(tcp_ports), udp_ports=frozenset(udp), ts_base=ts_base(),
                            firewalled=rng.random() < 0.15, hostname=f"{kind}-{i}"))
    admins = []
    for i in range(rng.randint(1, 2)):
        stack = rng.choice(["windows10", "windows7", "linux5", "macos"])
        oui = {"windows10": "intel", "windows7": "dell", "linux5": "dell", "macos": "apple"}[stack]
        admins.append(Host(f"admin-{i}", "workstation", addr(), _mac(rng, oui), STACKS[stack], ts_base=ts_base(),
                           firewalled=True, hostname=f"laptop-{i}"))
    attackers = []
    for i in range(rng.randint(*n_attackers)):
        attackers.append(Host(f"attacker-{i}", "attacker", addr(), _mac(rng, rng.choice(["intel", "dell"])),
                              STACKS["linux4" if rng.random() < 0.6 else "linux5"], ts_base=ts_base(),
                              hostname=f"kali-{i}"))
    cloud = []
    for name, (a, b) in CLOUD_SERVICES:
        ip = bytes([a, b, rng.randrange(256), rng.randint(1, 254)])
        cloud.append(Host(name, "cloud", ip, b"\x00" * 6, STACKS[rng.choice(["linux4", "linux5"])],
                          tcp_ports=frozenset({443, 80}), hops=rng.randint(8, 18), ts_base=ts_base(), hostname=name))
    dns_upstream = Host("dns-upstream", "cloud", ip4(rng.choice(["1.1.1.1", "8.8.8.8", "9.9.9.9", "208.67.222.222"])),
                        b"\x00" * 6, STACKS["linux5"], udp_ports=frozenset({53}), hops=rng.randint(6, 12))
    ntp_server = Host("ntp-pool", "cloud", bytes([rng.choice([5, 45, 85, 162, 194]), rng.randrange(256),
                                                  rng.randrange(256), rng.randint(1, 254)]),
                      b"\x00" * 6, STACKS["linux4"], udp_ports=frozenset({123}), hops=rng.randint(8, 16))
    domain = rng.choice(["home.lan", "iot.local", "lab.internal", "smart.home"])
    return Network(subnet, gateway, broker, nas, devices, admins, attackers, cloud, dns_upstream, ntp_server, domain)


def with_stack(host: Host, stack: str) -> Host:
    return replace(host, stack=STACKS[stack])


__all__ = ["StackProfile", "STACKS", "Host", "Network", "build_network", "random_public_ip", "with_stack",
           "PROTO_TCP", "PROTO_UDP"]
