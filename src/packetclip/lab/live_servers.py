"""Config files and content for the live lab's servers, written into the lab's temp folder.

Every server listens only on the server namespace's address (``SERVER_IP``), runs in the foreground
under the lab's control, logs into the temp folder, and uses no system-wide config or service.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import random
from dataclasses import dataclass
from pathlib import Path

from packetclip.lab.live_plan import (AMP_NAME, AMP_TXT_RECORDS, HTTP_ADMIN_PASSWORD, HTTP_ADMIN_USER, LAB_DOMAIN,
                                      MQTT_PASSWORD, MQTT_USER, SERVER_IP, TELNET_PASSWORD, TELNET_USER)
from packetclip.lab import live_tools


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()


def _bin(name: str, default: str | None = None) -> str:
    """Path of a server binary (looked up when the lab starts, so tests can patch ``live_tools.find_binary``)."""
    return live_tools.find_binary(name) or default or name


def _user(*names: str) -> str:
    for name in names:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return "root"


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


_SSH_SESSION = """#!/bin/sh
# ForceCommand of the lab SSH server: a small device console, nothing else can run.
case "$SSH_ORIGINAL_COMMAND" in
  status) echo "device lab-gw up $(cut -d' ' -f1 /proc/uptime)s load $(cut -d' ' -f1-3 /proc/loadavg)"; date -u ;;
  logs) i=0; while [ $i -lt 200 ]; do echo "$(date -u +%FT%T) lab-gw sensord[$i]: reading ok value=$((i * 7 % 97))"; i=$((i + 1)); done ;;
  interactive)
    echo "lab-gw console"; printf '> '
    while read -r line; do
      case "$line" in
        exit) echo bye; exit 0 ;;
        uptime|status) cut -d' ' -f1-3 /proc/loadavg ;;
        date) date -u ;;
        *) echo "$line: ok" ;;
      esac
      printf '> '
    done ;;
  *) echo "lab-gw: unknown command" ;;
esac
"""


_TELNET_LOGIN = f"""#!/bin/sh
# Login program of the lab's telnet server: the gateway's console, checked against the lab's device
# credentials (never the system's accounts); it never starts a shell.
tries=0
while [ $tries -lt 3 ]; do
  printf 'lab-gw login: '; read -r user || exit 0
  printf 'Password: '; stty -echo 2>/dev/null; read -r pass || exit 0; stty echo 2>/dev/null; echo
  if [ "$user" = "{TELNET_USER}" ] && [ "$pass" = "{TELNET_PASSWORD}" ]; then
    echo "BusyBox v1.35 built-in shell (ash)"; printf 'lab-gw# '
    while read -r line; do [ "$line" = exit ] && exit 0; echo "$line: ok"; printf 'lab-gw# '; done
    exit 0
  fi
  echo "Login incorrect"; tries=$((tries + 1))
done
"""


def prepare_servers(work: Path, seed: int, ssh_keygen: str | None = None) -> list[ServerSpec]:
    """Write configs, keys and content under ``work`` (mode 0755 so the servers' users can read them)."""
    rng = random.Random(seed)
    work.chmod(0o755)
    ip = SERVER_IP
    keygen = ssh_keygen or _bin("ssh-keygen")

    # -- web content (nginx) --
    www = work / "www"
    _write(www / "index.html", "<html><head><title>lab-gw</title></head><body><h1>IoT gateway</h1>"
                               "<a href='/docs/setup.html'>setup</a> <a href='/api/status.json'>status</a></body></html>\n")
    for page in ("setup", "faq"):
        _write(www / "docs" / f"{page}.html", f"<html><body><h1>{page}</h1>" + "<p>lorem ipsum</p>" * 80 + "</body></html>\n")
    _write(www / "api" / "status.json", '{"device":"lab-gw","fw":"1.4.2","sensors":12,"ok":true}\n')
    _write(www / "robots.txt", "User-agent: *\nDisallow: /admin/\n")
    _write(www / "admin" / "index.html", "<html><body><h1>admin console</h1></body></html>\n")
    _write(www / "login.html", "<html><body><form method='post' action='/login'><input name='user'>"
                               "<input name='pass' type='password'><input type='submit'></form></body></html>\n")
    for i in range(1, 5):
        _write(www / "cam" / f"snapshot-{i}.jpg", rng.randbytes(rng.randint(30_000, 180_000)))
    for i in range(1, 4):
        _write(www / "firmware" / f"fw-{i}.bin", rng.randbytes(rng.randint(1_500_000, 4_000_000)))
    for i in range(4):
        _write(work / f"upload-{i}.jpg", rng.randbytes(rng.randint(2_000, 60_000)))
    sha = base64.b64encode(hashlib.sha1(HTTP_ADMIN_PASSWORD.encode()).digest()).decode()
    _write(work / "htpasswd", f"{HTTP_ADMIN_USER}:{{SHA}}{sha}\n")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    nginx_user = _user("www-data", "nginx", "nobody")
    login_re = HTTP_ADMIN_PASSWORD.replace("!", "(!|%21)")        # hydra sends it as typed, browsers encode it
    _write(work / "nginx.conf", f"""
user {nginx_user};
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/nginx-tmp/client_body;
  proxy_temp_path {work}/nginx-tmp/proxy;
  fastcgi_temp_path {work}/nginx-tmp/fastcgi;
  uwsgi_temp_path {work}/nginx-tmp/uwsgi;
  scgi_temp_path {work}/nginx-tmp/scgi;
  types {{ text/html html; application/json json; image/jpeg jpg; application/octet-stream bin; text/plain txt; }}
  default_type application/octet-stream;
  keepalive_timeout 15;
  client_header_timeout 60;
  # The login form's check: the body is read for the proxy, then matched against the admin credentials.
  map $request_body $login_ok {{ default 0; "~(^|&)user={HTTP_ADMIN_USER}&pass={login_re}(&|$)" 1; }}
  server {{
    listen {ip}:80;
    server_name lab-gw.{LAB_DOMAIN};
    root {www};
    location /admin/ {{ auth_basic "lab-gw admin"; auth_basic_user_file {work}/htpasswd; }}
    location = /upload {{ client_max_body_size 8m; default_type application/json; return 200 '{{"stored":true}}\\n'; }}
    location = /login {{
      if ($request_method != POST) {{ rewrite ^ /login.html last; }}
      proxy_set_header X-Login-Ok $login_ok;
      proxy_pass http://127.0.0.1:8081/check;
    }}
  }}
  server {{
    listen 127.0.0.1:8081;
    location = /check {{
      default_type text/html;
      if ($http_x_login_ok = 1) {{ return 200 "<html><body>welcome {HTTP_ADMIN_USER}</body></html>\\n"; }}
      return 200 "<html><body>invalid login</body></html>\\n";
    }}
  }}
}}
""")
    nginx = ServerSpec("nginx", [_bin("nginx"), "-p", str(work), "-e", f"{work}/nginx-error.log",
                                 "-c", f"{work}/nginx.conf"], tcp_ports=(80,))

    # -- SSH --
    for key in ("ssh_host_ed25519_key", "client_key"):
        for suffix in ("", ".pub"):
            (work / (key + suffix)).unlink(missing_ok=True)
        os.spawnv(os.P_WAIT, keygen, [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "packetclip-lab",
                                      "-f", str(work / key)])
    _write(work / "authorized_keys", (work / "client_key.pub").read_text(), 0o644)
    _write(work / "ssh-session.sh", _SSH_SESSION, 0o755)
    _write(work / "sshd_config", f"""
ListenAddress {ip}
Port 22
HostKey {work}/ssh_host_ed25519_key
PidFile {work}/sshd.pid
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {work}/authorized_keys
StrictModes no
ForceCommand {work}/ssh-session.sh
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
MaxStartups 100:30:200
MaxAuthTries 6
LoginGraceTime 20
PrintMotd no
""", 0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)    # sshd's privilege separation folder
    sshd = ServerSpec("sshd", [_bin("sshd", "/usr/sbin/sshd"), "-D", "-e", "-f", f"{work}/sshd_config"],
                      tcp_ports=(22,))

    # -- FTP (anonymous downloads; local logins go through PAM and fail for the dictionary) --
    ftp_root = work / "ftp"
    _write(ftp_root / "pub" / "backup.tar", rng.randbytes(rng.randint(800_000, 2_500_000)))
    _write(ftp_root / "pub" / "fw-1.bin", rng.randbytes(rng.randint(500_000, 1_500_000)))
    _write(ftp_root / "pub" / "logs.txt", "".join(f"line {i} sensor ok\n" for i in range(2000)))
    ftp_root.chmod(0o555)
    (work / "ftp-empty").mkdir(exist_ok=True)
    (work / "ftp-empty").chmod(0o555)
    _write(work / "vsftpd.conf", f"""
listen=YES
listen_ipv6=NO
listen_address={ip}
listen_port=21
background=NO
anonymous_enable=YES
anon_root={ftp_root}
no_anon_password=YES
local_enable=YES
write_enable=NO
pam_service_name=vsftpd
secure_chroot_dir={work}/ftp-empty
seccomp_sandbox=NO
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40200
pasv_address={ip}
connect_from_port_20=NO
xferlog_enable=YES
vsftpd_log_file={work}/vsftpd.log
dual_log_enable=NO
syslog_enable=NO
delay_failed_login=1
max_login_fails=3
max_clients=200
max_per_ip=50
ftpd_banner=lab-gw FTP
""", 0o600)
    vsftpd = ServerSpec("vsftpd", [_bin("vsftpd"), f"{work}/vsftpd.conf"], tcp_ports=(21,))

    # -- MQTT: the devices log in; the password file is made by mosquitto_passwd --
    (work / "mosquitto.passwd").unlink(missing_ok=True)
    os.spawnv(os.P_WAIT, _bin("mosquitto_passwd"), [_bin("mosquitto_passwd"), "-c", "-b", str(work / "mosquitto.passwd"),
                                                   MQTT_USER, MQTT_PASSWORD])
    (work / "mosquitto.passwd").chmod(0o644)
    _write(work / "mosquitto.conf", f"""
listener 1883 {ip}
allow_anonymous false
password_file {work}/mosquitto.passwd
persistence false
log_dest stdout
log_type error
log_type warning
max_connections 2000
""")
    mosquitto = ServerSpec("mosquitto", [_bin("mosquitto"), "-c", f"{work}/mosquitto.conf"],
                           tcp_ports=(1883,))

    # -- Telnet: inetd (foreground) starts telnetd per connection with the lab console as login --
    _write(work / "telnet-login.sh", _TELNET_LOGIN, 0o755)
    _write(work / "inetd.conf", f"{ip}:telnet stream tcp4 nowait root {_bin('telnetd', '/usr/sbin/telnetd')} "
                                f"telnetd -h -E {work}/telnet-login.sh\n")
    inetd = ServerSpec("inetd", [_bin("inetutils-inetd", "/usr/sbin/inetutils-inetd"), "-d", "-p",
                                 f"{work}/inetd.pid", f"{work}/inetd.conf"], tcp_ports=(23,))

    # -- DNS: every name under lab.iot answers with the gateway; nothing is forwarded anywhere; the
    #    TXT records of one name make a ~1.3 kB answer (EDNS0, below the MTU): the reflection's amplifier --
    amp_records = [f"--txt-record={AMP_NAME}.{LAB_DOMAIN},\"v=fw{i} " + rng.randbytes(110).hex() + "\""
                   for i in range(AMP_TXT_RECORDS)]
    _write(work / "dns-hosts", "".join(f"{ip} {h}.{LAB_DOMAIN}\n" for h in ("broker", "ntp", "api", "gateway", "fw")))
    dnsmasq = ServerSpec("dnsmasq", [_bin("dnsmasq"), "--keep-in-foreground", "--conf-file=/dev/null",
                                     "--no-resolv", "--no-hosts", "--no-poll", f"--listen-address={ip}",
                                     "--bind-interfaces", "--port=53", f"--local=/{LAB_DOMAIN}/",
                                     f"--address=/{LAB_DOMAIN}/{ip}", f"--addn-hosts={work}/dns-hosts",
                                     f"--txt-record=cam1.{LAB_DOMAIN},\"model=labcam fw=2.1\"",
                                     *amp_records, "--edns-packet-max=1400",
                                     f"--pid-file={work}/dnsmasq.pid", f"--user={_user('dnsmasq', 'nobody')}",
                                     "--cache-size=1000", "--dns-forward-max=1000", "--log-facility=-"],
                         udp_ports=(53,), tcp_ports=(53,))
    return [nginx, sshd, vsftpd, mosquitto, inetd, dnsmasq]
