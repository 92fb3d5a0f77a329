"""Application-layer DoS: HTTP floods (HULK, GoldenEye, LOIC, HOIC) and slow POST / slow read (slowhttptest).

CIC-IDS2017's DoS is mostly HTTP floods, so a detector that never saw one misses most of it. The models follow
the tools' code with default options:

* **HULK** (hulk.py): one ``urllib`` request per connection, ``GET /?<3-10 random letters>=<3-10 random
  letters>`` with a random User-Agent from its list, a random Referer (a search engine + random keyword),
  ``Cache-Control: no-cache``, ``Accept-Charset: ISO-8859-1,utf-8;q=0.7,*;q=0.7``, ``Keep-Alive: <110-120>``,
  ``Connection: keep-alive``; it reads the response and the socket is closed by the client.
* **GoldenEye** (goldeneye.py): 10 workers x 500 sockets, keep-alive connections, GET or POST (random) to a
  random path with random query keys, random ``Keep-Alive``/``Cache-Control``, a random UA built from OS and
  browser parts; a socket sends one to a few requests, then idles until the server's keep-alive timeout closes it.
* **LOIC HTTP** (Windows .NET): a minimal ``GET / HTTP/1.0`` per connection as fast as it can; the server
  closes after the response (HTTP/1.0). **HOIC**: keep-alive GETs with booster-script headers, several per
  connection. Both run on Windows (TTL 128, the Windows stack's windows): the lab gives the attacker's address
  a Windows stack for these episodes.

The server answers every request with its page (Apache's 11 kB default page, nginx's 612 bytes, a device's
own small page), and under load more slowly (its answer time grows with the request rate) and sometimes not at
all (the client gives up and resets).

**Slow HTTP** (slowhttptest -B slow POST, -X slow read; R.U.D.Y. is slow POST): slow POST sends complete
headers announcing a large ``Content-Length`` (8192 by default) and then a few body bytes per interval (-i 10 s)
until the server's body timeout; slow read sends a complete request with a tiny receive window (-w/-y 512-1024
bytes) and then reads the answer a few bytes at a time, so the server is left sending window-sized segments
and zero-window probes.
"""

from __future__ import annotations

import random
import string

from packetclip.lab.network import Host, with_stack
from packetclip.lab.packets import ACK, PSH
from packetclip.lab.protocols import html_page, http_request, http_response
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, poisson_times, rtt, scale_duration
from packetclip.lab.tooldata import USER_AGENTS
from packetclip.lab.wire import TcpConn

_LOWER = string.ascii_lowercase
_ALNUM = string.ascii_letters + string.digits

# HULK's referers and extra User-Agents (hulk.py's lists, a sample)
_HULK_REFERERS = ["http://www.google.com/?q=", "http://www.usatoday.com/search/results?q=",
                  "http://engadget.search.aol.com/search?q=", "http://www.bing.com/search?q="]
_HULK_UAS = [
    "Mozilla/5.0 (X11; U; Linux x86_64; en-US; rv:1.9.1.3) Gecko/20090913 Firefox/3.5.3",
    "Mozilla/5.0 (Windows; U; Windows NT 6.1; en; rv:1.9.1.3) Gecko/20090824 Firefox/3.5.3 (.NET CLR 3.5.30729)",
    "Mozilla/5.0 (Windows; U; Windows NT 5.2; en-US; rv:1.9.1.3) Gecko/20090824 Firefox/3.5.3 (.NET CLR 3.5.30729)",
    "Mozilla/5.0 (Windows; U; Windows NT 6.1; en-US; rv:1.9.1.1) Gecko/20090718 Firefox/3.5.1",
    "Mozilla/5.0 (Windows; U; Windows NT 5.1; en-US) AppleWebKit/532.1 (KHTML, like Gecko) Chrome/4.0.219.6 Safari/532.1",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; WOW64; Trident/4.0; SLCC2; .NET CLR 2.0.50727; InfoPath.2)",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.0; Trident/4.0; SLCC1; .NET CLR 2.0.50727; .NET CLR 1.1.4322)",
    "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)",
    "Opera/9.80 (Windows NT 5.2; U; ru) Presto/2.5.22 Version/10.51",
]
_GE_OS = ["Windows NT 6.1", "Windows NT 6.2", "Windows NT 10.0", "X11; Linux x86_64", "Macintosh; Intel Mac OS X 10_9"]
_GE_BROWSER = ["Gecko/20100101 Firefox/{v}.0", "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36"]
# (Server header, default page size): Apache's default page (what CIC-IDS2017's victim served), nginx, devices
_SERVERS = [("Apache/2.4.18 (Ubuntu)", 11321), ("Apache/2.4.41 (Ubuntu)", 10918), ("nginx/1.18.0", 612),
            ("lighttpd/1.4.59", 3525), ("uhttpd", 2410), ("GoAhead-Webs", 1742)]


def _rand(rng: random.Random, lo: int, hi: int, alphabet: str = _LOWER) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def web_victim(rng: random.Random, net) -> Host:
    """A web server of the lab: the gateway's or NAS's admin page, or a camera/plug's own."""
    pool = net.web_servers() or [net.gateway]
    weights = [4 if h in (net.gateway, net.nas) else 1 for h in pool]
    return rng.choices(pool, weights)[0]


class _Web:
    """The victim web server's answers for one episode: its page, its header, its growing answer time."""

    def __init__(self, rng: random.Random, server: str, page: int):
        self.rng = rng
        self.server = server
        self.body = html_page(rng, page, "Apache2 Ubuntu Default Page: It works" if "Apache" in server else "Welcome")

    def response(self, keep_alive: bool, status: int = 200) -> bytes:
        body = self.body if status == 200 else html_page(self.rng, 300, f"{status}")
        extra = [("Keep-Alive", "timeout=5, max=100")] if keep_alive else []
        return http_response(status, body, self.server, extra=extra, keep_alive=keep_alive)


class HttpFlood(Scenario):
    label = "HTTP Flood"
    name = "http-flood"

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def plan(self, rng, net, start, max_duration):
        tool = rng.choices(["hulk", "goldeneye", "loic", "hoic"], [40, 30, 20, 10])[0]
        duration = scale_duration(rng, *self.cfg["flood_duration_s"], max_duration)
        # connections per second: a flood's packet budget spread over ~8-14 packets per connection
        cps = rng.uniform(*self.cfg["flood_rate_pps"]) / rng.uniform(8.0, 14.0)
        victim = web_victim(rng, net)
        server, page = rng.choice(_SERVERS)
        if victim.stack.name == "lwip":
            server, page = "esp-httpd", rng.randint(600, 2400)
        params = {"tool": tool, "cps": round(cps, 1), "dport": 80, "server": server, "page": page,
                  "keepalive_s": rng.choice([5.0, 5.0, 15.0, 60.0, 75.0]),
                  "requests_per_conn": {"hulk": [1, 1], "goldeneye": [1, 3], "loic": [1, 1], "hoic": [2, 8]}[tool],
                  "overload": round(rng.uniform(0.0, 0.25), 2),
                  "attacker_stack": rng.choice(["windows7", "windows10"]) if tool in ("loic", "hoic") else None}
        attackers = list(net.attackers) if tool in ("loic", "hoic") else [rng.choice(net.attackers)]
        return Plan(self.label, {"hulk": "hulk.py", "goldeneye": "goldeneye.py -w 10 -s 500", "loic": "LOIC (HTTP)",
                                 "hoic": "HOIC"}[tool] + f" http://{'.'.join(map(str, victim.ip))}/",
                    start, start + duration, params, attackers, [victim])

    def _request(self, rng: random.Random, tool: str, host: str) -> bytes:
        if tool == "hulk":
            path = f"/?{_rand(rng, 3, 10)}={_rand(rng, 3, 10)}"
            headers = [("Accept-Charset", "ISO-8859-1,utf-8;q=0.7,*;q=0.7"),
                       ("Referer", rng.choice(_HULK_REFERERS) + _rand(rng, 5, 10, string.ascii_uppercase)),
                       ("Cache-Control", "no-cache"), ("Keep-Alive", str(rng.randint(110, 120)))]
            return http_request("GET", path, host, rng.choice(_HULK_UAS), headers)
        if tool == "goldeneye":
            ua = (f"Mozilla/5.0 ({rng.choice(_GE_OS)}) "
                  + rng.choice(_GE_BROWSER).format(v=rng.randint(20, 60)))
            keys = "&".join(f"{_rand(rng, 3, 10, _ALNUM)}={_rand(rng, 3, 20, _ALNUM)}" for _ in range(rng.randint(1, 3)))
            path = "/" + (_rand(rng, 3, 12, _ALNUM) + "/" if rng.random() < 0.5 else "") + "?" + keys
            headers = [("Accept-Encoding", rng.choice(["gzip", "deflate", "identity", "*"])),
                       ("Cache-Control", rng.choice(["no-cache", "max-age=0"])),
                       ("Keep-Alive", str(rng.randint(110, 160)))]
            if rng.random() < 0.5:
                body = keys.encode()
                return http_request("POST", path, host, ua, headers + [
                    ("Content-Type", "application/x-www-form-urlencoded")], body=body)
            return http_request("GET", path, host, ua, headers)
        if tool == "loic":
            return b"GET / HTTP/1.0\r\n\r\n"
        headers = [("Accept", "text/html,application/xhtml+xml"), ("Referer", f"http://{host}/"),
                   ("Accept-Language", "en-us")]
        return http_request("GET", "/", host, rng.choice(USER_AGENTS), headers)

    def run(self, ctx: Ctx) -> None:
        rng, w = ctx.rng, ctx.wire
        p = ctx.params
        v = ctx.plan.victims[0]
        attackers = [with_stack(a, p["attacker_stack"]) if p["attacker_stack"] else a for a in ctx.plan.attackers]
        ports = {a.name: Ports(rng, a) for a in attackers}
        web = _Web(rng, p["server"], p["page"])
        host = ".".join(map(str, v.ip))
        tool = p["tool"]
        lo, hi = p["requests_per_conn"]
        for t0 in poisson_times(rng, ctx.start, ctx.end, p["cps"]):
            a = rng.choice(attackers)
            conn = TcpConn(w, a, v, ports[a.name].next(), p["dport"], rtt_s=rtt(rng, a, v), rtt_c=rtt(rng, v, a))
            t = conn.handshake(t0)
            keep = tool != "loic"
            for k in range(rng.randint(lo, hi)):
                req = self._request(rng, tool, host)
                if rng.random() < p["overload"]:
                    # the server accepted but never answered in time: the client gives up and resets
                    t = conn.data(t, 0, req, ack="delayed")
                    conn.close(t + rng.uniform(1.0, 10.0), 0, how="rst")
                    break
                # answer time grows with the load the flood puts on the server
                server_time = rng.lognormvariate(-5.5, 1.0) * (1.0 + p["cps"] / 50.0)
                t = conn.exchange(t + rng.uniform(1e-4, 2e-3), req, web.response(keep), server_time=server_time)
            else:
                if tool == "hulk":
                    conn.close(t + rng.uniform(1e-4, 3e-3), 0)
                elif tool == "loic":
                    conn.close(t + rng.uniform(1e-5, 5e-4), 1)          # HTTP/1.0: the server closes
                else:
                    conn.close(t + p["keepalive_s"] * rng.uniform(0.98, 1.02), 1)   # keep-alive timeout


class SlowHttp(Scenario):
    label = "Slow HTTP"
    name = "slowhttptest-body-read"

    def plan(self, rng, net, start, max_duration):
        mode = rng.choice(["slow-post", "slow-post", "slow-read"])
        duration = scale_duration(rng, 60, 240, max_duration)
        victim = web_victim(rng, net)
        params = {"mode": mode, "connections": rng.choice([50, 50, 100, 200]), "rate": rng.choice([50, 50, 100]),
                  "interval_s": rng.choice([10.0, 10.0, 5.0, 20.0]), "content_length": rng.choice([8192, 4096, 100000]),
                  "chunk": [1, rng.choice([10, 24, 32])], "window": [rng.choice([1, 32, 512]), rng.choice([512, 1024])],
                  "body_timeout_s": rng.choice([20.0, 40.0, 60.0, 300.0]), "read_s": rng.choice([5.0, 10.0]),
                  "pipeline": rng.choice([1, 3]), "page": rng.choice([11321, 4096, 32768])}
        flag = "-B" if mode == "slow-post" else "-X"
        return Plan(self.label, f"slowhttptest {flag} -c {params['connections']} -r {params['rate']}", start,
                    start + duration, params, [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng, w = ctx.rng, ctx.wire
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        eph = Ports(rng, a)
        host = ".".join(map(str, v.ip))
        base, back = rtt(rng, a, v), rtt(rng, v, a)
        # slowhttptest opens -c connections at -r per second; a connection the server drops is replaced by a new
        # one (as its -l run keeps the count up)
        starts = [ctx.start + i / p["rate"] * rng.uniform(0.9, 1.1) for i in range(p["connections"])]
        while starts:
            start = starts.pop()
            if start >= ctx.end:
                continue
            conn = TcpConn(w, a, v, eph.next(), 80, rtt_s=base, rtt_c=back)
            t = conn.handshake(start)
            if p["mode"] == "slow-post":
                ends = self._slow_post(conn, t, rng, p, host, ctx.end)
            else:
                ends = self._slow_read(conn, t, rng, p, host, ctx.end)
            starts.append(ends + rng.uniform(0.05, 1.0))

    @staticmethod
    def _slow_post(conn: TcpConn, t: float, rng: random.Random, p: dict, host: str, end: float) -> float:
        ua = rng.choice(USER_AGENTS)
        head = http_request("POST", "/", host, ua, [("Content-Length", str(p["content_length"])),
                                                  ("Content-Type", "application/x-www-form-urlencoded")])
        head = head.replace(b"Connection: keep-alive\r\n\r\n", b"Connection: close\r\n\r\n")
        t = conn.data(t + rng.uniform(1e-4, 1e-3), 0, head, ack="delayed")
        deadline = t + p["body_timeout_s"]
        sent = 0
        while True:
            t += p["interval_s"] * rng.uniform(0.98, 1.02)
            if t >= deadline or t >= end or sent >= p["content_length"]:
                break
            chunk = _rand(rng, p["chunk"][0], p["chunk"][1], _ALNUM).encode()
            conn.data(t, 0, chunk, ack="delayed")
            sent += len(chunk)
        if t >= end:
            return t
        # the server's body timeout: a 408 (Apache) or a silent close
        td = deadline + rng.uniform(0.0, 0.05)
        if rng.random() < 0.6:
            conn.data(td, 1, http_response(408, html_page(rng, 220, "408 Request Timeout"), "Apache/2.4.41 (Ubuntu)",
                                           keep_alive=False), ack="delayed")
        return conn.close(td + rng.uniform(1e-4, 1e-3), 1)

    @staticmethod
    def _slow_read(conn: TcpConn, t: float, rng: random.Random, p: dict, host: str, end: float) -> float:
        lo, hi = p["window"]
        win = rng.randint(lo, hi)
        conn.win[0] = win            # the tiny receive window slowhttptest sets with SO_RCVBUF
        for _ in range(p["pipeline"]):
            t = conn.data(t + rng.uniform(1e-4, 1e-3), 0, http_request("GET", "/", host, rng.choice(USER_AGENTS)),
                          ack="none")
        remaining = p["pipeline"] * (p["page"] + 250)
        t += conn.jitter(1) + rng.uniform(1e-4, 2e-3)
        while remaining > 0 and t < end:
            size = min(win, remaining)
            conn.send(t, 1, ACK | PSH, rng.randbytes(size))
            remaining -= size
            # the client's window is now full: it advertises zero until it reads again
            conn.send(t + conn.jitter(0), 0, ACK, window=0)
            tz = t + 0.2
            probe = 0.2
            t_read = t + p["read_s"] * rng.uniform(0.9, 1.1)
            while tz < t_read:           # the server's zero-window probes, exponential back-off
                conn.send(tz, 1, ACK, b"")
                conn.send(tz + conn.jitter(0), 0, ACK, window=0)
                probe *= 2
                tz += probe
            conn.send(t_read, 0, ACK, window=win)     # window update: read some bytes
            t = t_read + conn.jitter(1)
        if t >= end:
            return t
        return conn.close(t, 1)

