"""Brute force beyond the paper's dictionary attacks: HTTP login forms and basic auth, MQTT and Telnet guessing.

* **HTTP login brute force** (hydra http-post-form / http-get, patator http_fuzz, Burp Intruder-like scripts):
  form POSTs of ``user=<u>&pass=<p>`` to the device's login page, answered with the login page again and its
  error message (200) or a redirect back to it (302); with a CSRF token the tool first GETs the form for each
  try. Keep-alive connections carry many tries (Burp, scripts) or one each (hydra's default); basic-auth
  variants send ``Authorization: Basic`` GETs answered by 401.
* **MQTT credential guessing** (mqtt-pwn, ncrack mqtt, nmap mqtt-brute): CONNECT with username and password,
  the broker answers CONNACK 0x04/0x05 (bad user name or password / not authorised) and closes (mosquitto
  closes after a refused CONNACK), one try per connection.
* **Telnet default-credential guessing** (Mirai-style scanners): connect to 23 (or 2323), answer the option
  negotiation, one user/password pair from the built-in IoT list per connection, BusyBox's ``Login incorrect``
  after its delay, then the next connection.
"""

from __future__ import annotations

from urllib.parse import quote

from packetclip.lab.packets import PROTO_TCP
from packetclip.lab.protocols import (MQTT_DISCONNECT, TELNET_NEGOTIATION_CLIENT, TELNET_NEGOTIATION_SERVER,
                                      TELNET_SERVER_WILL, basic_auth, html_page, http_request, http_response,
                                      mqtt_connack, mqtt_connect)
from packetclip.lab.scenarios.base import Ctx, Plan, Ports, Scenario, rtt, scale_duration
from packetclip.lab.scenarios.http_flood import web_victim
from packetclip.lab.tooldata import PASSWORDS, USER_AGENTS, USERNAMES
from packetclip.lab.wire import TcpConn

# Mirai's built-in credential pairs (a sample of its table)
MIRAI_CREDS = [("root", "xc3511"), ("root", "vizxv"), ("root", "admin"), ("admin", "admin"), ("root", "888888"),
               ("root", "xmhdipc"), ("root", "default"), ("root", "juantech"), ("root", "123456"), ("root", "54321"),
               ("support", "support"), ("root", ""), ("admin", "password"), ("root", "root"), ("root", "12345"),
               ("user", "user"), ("admin", ""), ("root", "pass"), ("admin", "admin1234"), ("root", "1111"),
               ("admin", "smcadmin"), ("admin", "1111"), ("root", "666666"), ("root", "password"), ("root", "1234"),
               ("root", "klv123"), ("Administrator", "admin"), ("service", "service"), ("supervisor", "supervisor"),
               ("guest", "guest"), ("guest", "12345"), ("admin1", "password"), ("administrator", "1234"),
               ("666666", "666666"), ("888888", "888888"), ("ubnt", "ubnt"), ("root", "klv1234"), ("root", "Zte521"),
               ("root", "hi3518"), ("root", "jvbzd"), ("root", "anko"), ("root", "zlxx."), ("root", "7ujMko0vizxv"),
               ("root", "7ujMko0admin"), ("root", "system"), ("root", "ikwb"), ("root", "dreambox"), ("root", "user"),
               ("root", "realtek"), ("root", "00000000"), ("admin", "1111111"), ("admin", "1234"), ("admin", "12345"),
               ("admin", "54321"), ("admin", "123456"), ("admin", "7ujMko0admin"), ("admin", "pass"),
               ("admin", "meinsm"), ("tech", "tech"), ("mother", "fucker")]


class HttpBruteForce(Scenario):
    label = "HTTP Brute Force"
    name = "http-login-brute"

    def plan(self, rng, net, start, max_duration):
        tool = rng.choices(["hydra http-post-form", "hydra http-get", "patator http_fuzz", "burp-intruder"],
                           [40, 20, 20, 20])[0]
        victim = web_victim(rng, net)
        duration = scale_duration(rng, 40, 200, max_duration)
        keep = tool in ("burp-intruder", "patator http_fuzz")
        params = {"tool": tool, "tasks": 1 if tool == "burp-intruder" else rng.choice([1, 2, 4]),
                  "tries_per_conn": rng.choice([50, 100]) if keep else 1, "csrf": rng.random() < 0.3,
                  "path": rng.choice(["/login.php", "/cgi-bin/login.cgi", "/login", "/admin/login.asp", "/index.php"]),
                  "fields": rng.choice([["username", "password"], ["user", "pass"], ["login", "pwd"]]),
                  "fail": rng.choice(["200", "302"]), "think_s": rng.uniform(0.05, 0.4) if tool == "burp-intruder"
                  else rng.uniform(0.0005, 0.01), "users": rng.sample(USERNAMES, rng.randint(1, 3)),
                  "page": rng.randint(900, 4000)}
        return Plan(self.label, f"{tool} {params['path']}", start, start + duration, params,
                    [rng.choice(net.attackers)], [victim])

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        a, v = ctx.plan.attackers[0], ctx.plan.victims[0]
        eph = Ports(rng, a)
        host = ".".join(map(str, v.ip))
        base, back = rtt(rng, a, v), rtt(rng, v, a)
        creds = [(u, pw) for u in p["users"] for pw in rng.sample(PASSWORDS, len(PASSWORDS))]
        ua = "Mozilla/5.0 (Hydra)" if p["tool"].startswith("hydra") else rng.choice(USER_AGENTS)
        server = rng.choice(["lighttpd/1.4.59", "Apache/2.4.41 (Ubuntu)", "GoAhead-Webs", "nginx/1.18.0"])
        login_page = html_page(rng, p["page"], "Login")
        k = 0
        for task in range(p["tasks"]):
            t = ctx.start + task * rng.uniform(0.001, 0.05)
            while t < ctx.end:
                conn = TcpConn(ctx.wire, a, v, eph.next(), 80, rtt_s=base, rtt_c=back)
                t = conn.handshake(t)
                keep = p["tries_per_conn"] > 1
                for _ in range(p["tries_per_conn"]):
                    if t >= ctx.end:
                        break
                    user, pw = creds[k % len(creds)]
                    k += 1
                    if p["csrf"]:
                        t = conn.exchange(t, http_request("GET", p["path"], host, ua, keep_alive=keep),
                                          http_response(200, login_page, server, keep_alive=keep,
                                                        extra=[("Set-Cookie", f"sid={rng.randbytes(12).hex()}")]),
                                          server_time=rng.uniform(5e-4, 5e-3))
                        t += p["think_s"] * rng.uniform(0.5, 1.5)
                    if p["tool"] == "hydra http-get":
                        req = http_request("GET", p["path"], host, ua, [("Authorization", basic_auth(user, pw))],
                                           keep_alive=keep)
                        resp = http_response(401, html_page(rng, 300, "401 Unauthorized"), server, keep_alive=keep,
                                             extra=[("WWW-Authenticate", 'Basic realm="Login"')])
                    else:
                        f_user, f_pass = p["fields"]
                        body = f"{f_user}={quote(user)}&{f_pass}={quote(pw)}".encode()
                        req = http_request("POST", p["path"], host, ua, [
                            ("Content-Type", "application/x-www-form-urlencoded")], body=body, keep_alive=keep)
                        if p["fail"] == "302":
                            resp = http_response(302, b"", server, keep_alive=keep,
                                                 extra=[("Location", p["path"] + "?error=1")])
                        else:
                            resp = http_response(200, login_page.replace(b"</body>", b"<p>Invalid password</p></body>"),
                                                 server, keep_alive=keep)
                    # a login check hashes the password (PHP password_verify, a device's CGI): tens of ms
                    t = conn.exchange(t, req, resp, server_time=rng.uniform(0.02, 0.15))
                    t += p["think_s"] * rng.uniform(0.5, 1.5)
                t = conn.close(t, 0) + rng.uniform(1e-4, 5e-3)


class IoTBruteForce(Scenario):
    label = "IoT Brute Force"
    name = "mqtt-telnet-guessing"

    def plan(self, rng, net, start, max_duration):
        telnet = [h for h in [net.gateway, *net.devices] if h.is_open(PROTO_TCP, 23)]
        service = "telnet" if telnet and rng.random() < 0.5 else "mqtt"
        victims = (rng.sample(telnet, rng.randint(1, len(telnet))) if service == "telnet" else [net.broker])
        duration = scale_duration(rng, 40, 200, max_duration)
        params = {"service": service, "tool": "mirai-like scanner" if service == "telnet" else
                  rng.choice(["mqtt-pwn", "ncrack mqtt", "nmap mqtt-brute"]), "tasks": rng.choice([1, 2, 4, 8]),
                  "fail_delay_s": rng.uniform(1.0, 3.0) if service == "telnet" else rng.uniform(1e-4, 3e-3),
                  "refuse_code": rng.choice([4, 5])}
        return Plan(self.label, f"{params['tool']} {service}://", start, start + duration, params,
                    [rng.choice(net.attackers)], victims)

    def run(self, ctx: Ctx) -> None:
        rng = ctx.rng
        p = ctx.params
        a = ctx.plan.attackers[0]
        eph = Ports(rng, a)
        creds = MIRAI_CREDS if p["service"] == "telnet" else \
            [(u, pw) for u in rng.sample(USERNAMES, 3) for pw in rng.sample(PASSWORDS, len(PASSWORDS))]
        k = 0
        for task in range(p["tasks"]):
            t = ctx.start + task * rng.uniform(0.001, 0.1)
            while t < ctx.end:
                v = rng.choice(ctx.plan.victims)
                port = 23 if p["service"] == "telnet" else 1883
                conn = TcpConn(ctx.wire, a, v, eph.next(), port, rtt_s=rtt(rng, a, v), rtt_c=rtt(rng, v, a))
                t = conn.handshake(t)
                user, pw = creds[k % len(creds)]
                k += 1
                if p["service"] == "mqtt":
                    t = conn.exchange(t + rng.uniform(1e-4, 2e-3),
                                      mqtt_connect(f"{rng.randbytes(4).hex()}", 60, user, pw),
                                      mqtt_connack(p["refuse_code"]), server_time=p["fail_delay_s"])
                    if rng.random() < 0.3:
                        t = conn.data(t + rng.uniform(2e-5, 1e-4), 0, MQTT_DISCONNECT, ack="none")
                    t = conn.close(t + rng.uniform(1e-4, 1e-3), 1)
                else:
                    t += rng.uniform(0.001, 0.02)
                    conn.data(t, 1, TELNET_NEGOTIATION_SERVER, ack="none")
                    t += conn.jitter(0)
                    conn.data(t, 0, TELNET_NEGOTIATION_CLIENT, ack="none")
                    t += conn.jitter(1)
                    conn.data(t, 1, TELNET_SERVER_WILL + b"\r\nlogin: ", ack="delayed")
                    t += rng.uniform(0.01, 0.2)
                    conn.data(t, 0, (user + "\r\n").encode(), ack="none")
                    t += conn.jitter(1)
                    conn.data(t, 1, (user + "\r\nPassword: ").encode(), ack="delayed")
                    t += rng.uniform(0.01, 0.2)
                    conn.data(t, 0, (pw + "\r\n").encode(), ack="delayed")
                    t += p["fail_delay_s"] * rng.uniform(0.8, 1.2)
                    conn.data(t, 1, b"\r\nLogin incorrect\r\nlogin: ", ack="delayed")
                    t = conn.close(t + rng.uniform(0.001, 0.05), 0)
                t += rng.uniform(0.01, 0.3)


SCENARIOS = [HttpBruteForce(), IoTBruteForce()]
