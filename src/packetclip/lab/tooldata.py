"""Static data the attack tools carry: nmap's most frequent ports, nikto-style check paths, wordlists."""

from __future__ import annotations

import random

# nmap's 100 most frequent TCP ports, in nmap-services frequency order (what --top-ports 100 scans).
NMAP_TOP100_TCP = [
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993, 5900,
    1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, 8443, 8000, 32768, 554,
    26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631, 631, 49153, 8081, 2049, 88, 79, 5800, 106,
    2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, 144, 7, 389, 8009, 3128, 444, 9999, 5009,
    7070, 5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717, 4899, 9100, 119, 37,
]

# The rest of nmap's top-1000 TCP set (numeric order; ranges as "a-b").
_NMAP_REST = """1 3 4 6 17 19 20 24 30 32 33 42 43 49 70 82 83 84 85 89 90 99 100 109 125 146 161 163 211 212 222 254 255
256 259 264 280 301 306 311 340 366 406 407 416 417 425 458 464 481 497 500 512 524 541 545 555 563 593 616 617 625 636
648 666 667 668 683 687 691 700 705 711 714 720 722 726 749 765 777 783 787 800 801 808 843 880 888 898 900 901 902 903
911 912 981 987 992 999 1000 1001 1002 1007 1009 1010 1011 1021-1024 1030-1100 1102 1104-1108 1110 1111 1112 1113 1114
1117 1119 1121 1122 1123 1124 1126 1130 1131 1132 1137 1138 1141 1145 1147-1149 1151 1152 1154 1163-1166 1169 1174 1175
1183 1185-1187 1192 1198 1199 1201 1213 1216-1218 1233 1234 1236 1244 1247 1248 1259 1271 1272 1277 1287 1296 1300 1301
1309-1311 1322 1328 1334 1352 1417 1434 1443 1455 1461 1494 1500 1501 1503 1521 1524 1533 1556 1580 1583 1594 1600 1641
1658 1666 1687 1688 1700 1717-1719 1721 1761 1782 1783 1801 1805 1812 1839 1840 1862-1864 1875 1914 1935 1947 1971
1972 1974 1984 1998-2000 2002-2010 2013 2020-2022 2030 2033-2035 2038 2040-2043 2045-2048 2065 2068 2099 2100 2103
2105-2107 2111 2119 2126 2135 2144 2160 2161 2170 2179 2190 2191 2196 2200 2222 2251 2260 2288 2301 2323 2366 2381-2383
2393 2394 2399 2401 2492 2500 2522 2525 2557 2601 2602 2604 2605 2607 2608 2638 2701 2702 2710 2718 2725 2800 2809 2811
2869 2875 2909 2910 2920 2967 2968 2998 3001 3003 3005-3007 3011 3013 3017 3030 3031 3052 3071 3077 3168 3211 3221 3260
3261 3268 3269 3283 3300 3301 3322-3325 3333 3351 3367 3369-3372 3390 3404 3476 3493 3517 3527 3546 3551 3580 3659 3689
3690 3703 3737 3766 3784 3800 3801 3809 3814 3826-3828 3851 3869 3871 3878 3880 3889 3905 3914 3918 3920 3945 3971 3995
3998 4000-4006 4045 4111 4125 4126 4129 4224 4242 4279 4321 4343 4443-4446 4449 4550 4567 4662 4848 4900 4998 5001-5004
5030 5033 5050 5054 5061 5080 5087 5100 5102 5120 5200 5214 5221 5222 5225 5226 5269 5280 5298 5405 5414 5431 5440 5500
5510 5544 5550 5555 5560 5566 5633 5678 5679 5718 5730 5801 5802 5810 5811 5815 5822 5825 5850 5859 5862 5877 5901-5907
5910 5911 5915 5922 5925 5950 5952 5959-5963 5987-5989 5998-6000 6002-6007 6009 6025 6059 6100 6101 6106 6112 6123 6129
6156 6346 6389 6502 6510 6543 6547 6565-6567 6580 6666-6669 6689 6692 6699 6779 6788 6789 6792 6839 6881 6901 6969
7000-7002 7004 7007 7019 7025 7100 7103 7106 7200 7201 7402 7435 7443 7496 7512 7625 7627 7676 7741 7777 7778 7800 7911
7920 7921 7937 7938 7999 8001 8002 8007 8010 8011 8021 8022 8031 8042 8045 8082-8090 8093 8099 8100 8180 8181
8192-8194 8200 8222 8254 8290-8292 8300 8333 8383 8400 8402 8500 8600 8649 8651 8652 8654 8701 8800 8873 8899 8994
9000-9003 9009-9011 9040 9050 9071 9080 9081 9090 9091 9099 9101-9103 9110 9111 9200 9207 9220 9290 9415 9418 9485 9500
9502 9503 9535 9575 9593-9595 9618 9666 9876-9878 9898 9900 9917 9929 9943 9944 9968 9998 10001-10004 10009 10010 10012
10024 10025 10082 10180 10215 10243 10566 10616 10617 10621 10626 10628 10629 10778 11110 11111 11967 12000 12174 12265
12345 13456 13722 13782 13783 14000 14238 14441 14442 15000 15002-15004 15660 15742 16000 16001 16012 16016 16018 16080
16113 16992 16993 17877 17988 18040 18101 18988 19101 19283 19315 19350 19780 19801 19842 20000 20005 20031 20221 20222
20828 21571 22939 23502 24444 24800 25734 25735 26214 27000 27352 27353 27355 27356 27715 28201 30000 30718 30951 31038
31337 32769-32785 33354 33899 34571-34573 35500 38292 40193 40911 41511 42510 44176 44442 44443 44501 45100 48080
49158-49161 49163 49165 49167 49175 49176 49400 49999-50003 50006 50300 50389 50500 50636 50800 51103 51493 52673 52822
52848 52869 54045 54328 55055 55056 55555 55600 56737 56738 57294 57797 58080 60020 60443 61532 61900 62078 63331 64623
64680 65000 65129 65389"""


def _expand(spec: str) -> list[int]:
    out: list[int] = []
    for tok in spec.split():
        if "-" in tok:
            a, b = tok.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(tok))
    return out


def _top_ports() -> list[int]:
    seen = set(NMAP_TOP100_TCP)
    rest = [p for p in _expand(_NMAP_REST) if p not in seen]
    out = NMAP_TOP100_TCP + sorted(set(rest))
    return out[:1000]


NMAP_TOP1000_TCP = _top_ports()

# UDP ports nmap -sU tries first, with the protocol payloads nmap sends to them (nmap-payloads).
NMAP_TOP_UDP = [631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514, 49152, 162, 69,
                5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 136, 2222, 2049, 32768, 5060, 1025, 1433,
                3456, 80, 20031, 1026, 7, 1646, 1645, 593, 518, 2048, 31337, 515, 5683]
NMAP_UDP_PAYLOADS = {
    53: bytes.fromhex("000010000000000000000000"),                               # DNS status request
    123: bytes.fromhex("e30004fa000100000001000000000000000000000000000000000000000000000000000000000000c54f234b71b152f3"),
    161: bytes.fromhex("3082002f02010004067075626c6963a082002002044c33a756020100020100308200103082000c06082b060102010105000500"),
    137: bytes.fromhex("80f00010000100000000000020434b4141414141414141414141414141414141414141414141414141414141410000210001"),
    1900: b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMan: \"ssdp:discover\"\r\nMX: 5\r\nST: ssdp:all\r\n\r\n",
    5683: bytes.fromhex("40010101bb2e77656c6c2d6b6e6f776e04636f7265"),           # CoAP GET /.well-known/core
}


def nmap_port_order(ports: list[int], rng: random.Random) -> list[int]:
    """nmap shuffles the port list, then swaps the most popular ports to the front (random_port_cheat)."""
    order = list(ports)
    rng.shuffle(order)
    popular = [p for p in NMAP_TOP100_TCP[:24] if p in set(order)]
    for i, p in enumerate(popular):
        j = order.index(p)
        order[i], order[j] = order[j], order[i]
    return order


# Paths a nikto-style scanner requests (a sample of its database's targets), combined with CGI dirs.
NIKTO_PATHS = """/ /index.html /robots.txt /sitemap.xml /.git/HEAD /.git/config /.svn/entries /.env /.htaccess /.htpasswd
/admin/ /admin/login.php /admin/index.php /administrator/ /phpmyadmin/ /phpMyAdmin/ /pma/ /mysql/ /myadmin/ /dbadmin/
/wp-login.php /wp-admin/ /wp-content/ /wp-includes/ /xmlrpc.php /wp-config.php.bak /config.php /config.inc.php
/configuration.php /settings.php /web.config /server-status /server-info /status /nginx_status /cgi-bin/ /cgi-bin/test-cgi
/cgi-bin/printenv /cgi-bin/php /cgi-bin/php5 /cgi-bin/test.cgi /cgi-bin/admin.cgi /cgi-bin/login.cgi /scripts/ /icons/
/icons/README /manual/ /docs/ /examples/ /test/ /tmp/ /temp/ /backup/ /backups/ /backup.zip /backup.tar.gz /site.tar.gz
/db.sql /database.sql /dump.sql /data.sql /users.sql /shell.php /cmd.php /c99.php /r57.php /info.php /phpinfo.php /test.php
/login/ /login.html /logon.aspx /console/ /jmx-console/ /web-console/ /manager/html /host-manager/html /solr/ /jenkins/
/hudson/ /cgi-sys/ /axis2/ /servlet/ /invoker/ /uploads/ /upload.php /files/ /images/ /img/ /css/ /js/ /includes/ /inc/
/lib/ /vendor/ /node_modules/ /api/ /api/v1/ /swagger.json /swagger-ui.html /graphql /.well-known/security.txt
/crossdomain.xml /clientaccesspolicy.xml /favicon.ico /HNAP1/ /setup.cgi /boaform/admin/formLogin /GponForm/diag_Form
/cgi-bin/luci /userRpm/LoginRpm.htm /ISAPI/Security/userCheck /doc/page/login.asp /onvif/device_service /live.sdp
/stream /video.cgi /snapshot.cgi /cgi-bin/snapshot.cgi /webcam.html /cgi-bin/viewer/video.jpg /Main_Login.asp
/tmUnblock.cgi /shell /debug.cgi /firmware.bin /system.ini /etc/passwd /../../../../etc/passwd /.DS_Store /Thumbs.db
/README.md /CHANGELOG.txt /LICENSE.txt /composer.json /package.json /Dockerfile /docker-compose.yml /.bash_history
/id_rsa /id_dsa /server.key /privatekey.pem /cert.pem /error_log /access_log /logs/ /log/ /awstats/ /webalizer/ /stats/
/sql/ /mssql/ /oracle/ /ows-bin/ /cfdocs/ /iisadmin/ /_vti_bin/ /_vti_pvt/ /msadc/ /scripts/..%c0%af../winnt/system32/cmd.exe
/nikto-test-5a8f2.html /Default.aspx /default.asp /global.asa /trace.axd /elmah.axd /WEB-INF/web.xml /META-INF/MANIFEST.MF"""

NIKTO_FILE_SUFFIXES = [".bak", ".old", ".orig", ".save", "~", ".swp", ".tar", ".zip", ".inc", ".txt", ".cfg", ".conf"]
NIKTO_FILES = ["index", "admin", "login", "config", "backup", "db", "database", "test", "user", "users", "passwd",
               "password", "settings", "install", "setup", "upgrade", "debug", "default", "home", "main", "panel"]

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/111.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.3 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]

USERNAMES = ["admin", "root", "user", "pi", "ubnt", "support", "guest", "test", "operator", "administrator", "ftp",
             "oracle", "postgres", "ubuntu", "service", "camera", "default", "manager", "sysadmin", "tech"]
PASSWORDS = ["123456", "password", "admin", "12345678", "qwerty", "123456789", "12345", "1234", "111111", "1234567",
             "dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein", "696969", "shadow", "master",
             "666666", "qwertyuiop", "123321", "mustang", "1234567890", "michael", "654321", "pussy", "superman",
             "1qaz2wsx", "7777777", "fuckyou", "121212", "000000", "qazwsx", "123qwe", "killer", "trustno1", "jordan",
             "jennifer", "zxcvbnm", "asdfgh", "hunter", "buster", "soccer", "harley", "batman", "andrew", "tigger",
             "sunshine", "iloveyou", "raspberry", "ubnt", "toor", "changeme", "default", "root", "support", "12341234",
             "admin123", "pass", "passw0rd", "vizxv", "xc3511", "888888", "54321", "7ujMko0admin", "hi3518", "juantech"]


def nikto_paths(rng: random.Random, n: int) -> list[str]:
    base = NIKTO_PATHS.split()
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.45:
            out.append(rng.choice(base))
        elif r < 0.8:
            d = rng.choice(["/", "/cgi-bin/", "/admin/", "/scripts/", "/backup/", "/include/", "/web/", "/app/"])
            out.append(d + rng.choice(NIKTO_FILES) + rng.choice([".php", ".asp", ".cgi", ".pl", ".jsp", ".html"]
                                                                + NIKTO_FILE_SUFFIXES))
        else:
            p = rng.choice(base)
            q = rng.choice(["?id=1", "?file=../../../../etc/passwd", "?cmd=id", "?page=http://cirt.net/rfiinc.txt",
                            "?q=<script>alert(1)</script>", "?user=admin'--", "?debug=true", "?action=show"])
            out.append(p + q)
    return out
