"""What every scenario shares: the episode plan, the context it runs in, RTTs and ephemeral ports."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from packetclip.lab.network import Host, Network
from packetclip.lab.wire import Wire


@dataclass
class Plan:
    """One episode before it runs: what the scheduler records in episodes.parquet."""

    label: str                      # fine class
    tool: str                       # tool model, e.g. "nmap -sS -T4"
    start: float
    end: float
    params: dict = field(default_factory=dict)
    attackers: list[Host] = field(default_factory=list)
    victims: list[Host] = field(default_factory=list)
    model: "Scenario | None" = field(default=None, repr=False)   # set by the scheduler


@dataclass
class Ctx:
    """Everything a scenario's ``run`` needs."""

    net: Network
    rng: random.Random
    wire: Wire
    plan: Plan

    @property
    def params(self) -> dict:
        return self.plan.params

    @property
    def start(self) -> float:
        return self.plan.start

    @property
    def end(self) -> float:
        return self.plan.end


class Scenario:
    """A behaviour model: ``plan`` draws the episode's parameters, ``run`` writes its packets."""

    label = "Benign"
    name = "scenario"

    def plan(self, rng: random.Random, net: Network, start: float, max_duration: float) -> Plan:
        raise NotImplementedError

    def run(self, ctx: Ctx) -> None:
        raise NotImplementedError


def rtt(rng: random.Random, a: Host, b: Host) -> float:
    """Seconds between a packet from ``a`` to ``b`` and ``b``'s answer, at the LAN mirror port."""
    if not b.local:
        return rng.uniform(0.008, 0.12)
    if not a.local:
        return rng.uniform(0.0002, 0.004)
    wifi = b.stack.name in ("lwip", "embedded") or b.kind in ("temp-sensor", "smart-plug", "light-bulb", "door-lock",
                                                              "motion-sensor", "thermostat", "air-purifier")
    return rng.uniform(0.0015, 0.012) if wifi else rng.uniform(0.00004, 0.0004)


class Ports:
    """Ephemeral source ports the way each OS hands them out."""

    def __init__(self, rng: random.Random, host: Host):
        self.rng = rng
        if host.stack.name in ("windows10", "windows7"):
            self.lo, self.hi = 49152, 65535
        elif host.stack.name == "lwip":
            self.lo, self.hi = 49152, 65535
        else:
            self.lo, self.hi = 32768, 60999
        self.cur = rng.randint(self.lo, self.hi)
        self.sequential = host.stack.name in ("windows10", "windows7", "lwip")

    def next(self) -> int:
        if self.sequential:
            self.cur = self.cur + 1 if self.cur < self.hi else self.lo
        else:
            # Linux: random offset per destination, then increments of ~2 (RFC 6056 algorithm 3-like)
            self.cur += self.rng.choice((1, 2, 2, 3, 7))
            if self.cur > self.hi:
                self.cur = self.lo + (self.cur - self.hi)
        return self.cur


REFERENCE_ROOM_S = 240.0   # the room a 10-minute capture gives one attack episode


def scale_duration(rng: random.Random, lo: float, hi: float, max_duration: float) -> float:
    """A duration drawn from [lo, hi], shrunk in proportion when the capture is shorter than 10 minutes.

    ``max_duration`` is the room the schedule gives the episode (0.4 x the capture length for attacks);
    short captures get proportionally shorter episodes so that a 60 s run is small, not flood-dominated.
    """
    f = min(1.0, max_duration / REFERENCE_ROOM_S)
    d = rng.uniform(lo, hi) * f
    return max(min(2.0, max_duration), min(d, max_duration))


def poisson_times(rng: random.Random, start: float, end: float, rate: float) -> list[float]:
    """Event times of a Poisson process of ``rate`` per second in [start, end)."""
    out = []
    if rate <= 0:
        return out
    t = start + rng.expovariate(rate)
    while t < end:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def lognormal_bytes(rng: random.Random, median: float, sigma: float, lo: int = 1, hi: int = 10_000_000) -> int:
    import math

    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))
