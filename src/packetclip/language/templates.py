"""Data for flow descriptions: service names, template sentences per feature family, paraphrase rules.

Kept apart from the code so wording can be changed (or translated) without touching the logic.
Template fields are filled by :mod:`packetclip.language.describe` with already-formatted values
("1.2 kB", "35 ms", "4,100 packets/s", "2 SYN flags"); a template is only used in the situation it is
listed under, so every sentence states something the flow's own columns show. No template names an attack
class: which traffic it is must follow from what the flow did, not from its label.
"""

from __future__ import annotations

# ---- protocols and services -----------------------------------------------------------------------

IP_PROTOCOLS: dict[int, str] = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6",
                                132: "SCTP"}

# ICMP(v4) type -> what the messages are.
ICMP_TYPES: dict[int, str] = {
    0: "echo replies (ping answers)",
    3: "destination-unreachable errors",
    5: "redirect messages",
    8: "echo requests (pings)",
    11: "time-exceeded errors (traceroute answers)",
    13: "timestamp requests",
    14: "timestamp replies",
    17: "address-mask requests",
}

# port -> (short name, what it is). Ports are looked up on the server side (the lower well-known port).
SERVICES: dict[int, tuple[str, str]] = {
    0: ("reserved", "a reserved number that no service listens on"),
    7: ("Echo", "the echo service"),
    20: ("FTP-data", "the file-transfer data channel"),
    21: ("FTP", "the FTP file-transfer login service"),
    22: ("SSH", "the SSH remote-login shell"),
    23: ("Telnet", "the Telnet remote-login terminal"),
    25: ("SMTP", "the SMTP mail server"),
    53: ("DNS", "the domain name resolver"),
    67: ("DHCP", "the DHCP address-assignment server"),
    68: ("DHCP", "the DHCP client"),
    69: ("TFTP", "the trivial file-transfer service"),
    80: ("HTTP", "the web server"),
    88: ("Kerberos", "the Kerberos authentication service"),
    110: ("POP3", "the POP3 mailbox service"),
    111: ("RPC", "the RPC portmapper"),
    123: ("NTP", "the time server"),
    135: ("MS-RPC", "the Windows RPC endpoint mapper"),
    137: ("NetBIOS", "the NetBIOS name service"),
    138: ("NetBIOS", "the NetBIOS datagram service"),
    139: ("SMB", "the NetBIOS file-sharing session service"),
    143: ("IMAP", "the IMAP mailbox service"),
    161: ("SNMP", "the SNMP device-management agent"),
    389: ("LDAP", "the LDAP directory"),
    443: ("HTTPS", "the TLS-encrypted web server"),
    445: ("SMB", "the Windows file-sharing service"),
    465: ("SMTPS", "the encrypted mail submission service"),
    500: ("IKE", "the IPsec VPN key exchange"),
    502: ("Modbus", "the Modbus industrial controller"),
    514: ("Syslog", "the syslog collector"),
    554: ("RTSP", "the camera streaming (RTSP) service"),
    587: ("SMTP", "the mail submission service"),
    631: ("IPP", "the printer"),
    636: ("LDAPS", "the encrypted LDAP directory"),
    853: ("DNS-over-TLS", "the encrypted domain name resolver"),
    873: ("rsync", "the rsync file synchronisation service"),
    993: ("IMAPS", "the encrypted mailbox service"),
    995: ("POP3S", "the encrypted mailbox service"),
    1194: ("OpenVPN", "the OpenVPN tunnel endpoint"),
    1433: ("MSSQL", "the Microsoft SQL database"),
    1701: ("L2TP", "the L2TP VPN tunnel endpoint"),
    1723: ("PPTP", "the PPTP VPN endpoint"),
    1883: ("MQTT", "the MQTT message broker of the IoT devices"),
    1900: ("SSDP", "the UPnP device-discovery service"),
    2049: ("NFS", "the NFS file server"),
    2323: ("Telnet", "an alternate Telnet remote-login terminal"),
    3702: ("WS-Discovery", "the web-services device discovery"),
    3306: ("MySQL", "the MySQL database"),
    3389: ("RDP", "the remote desktop service"),
    5353: ("mDNS", "the multicast name-announcement service"),
    5432: ("PostgreSQL", "the PostgreSQL database"),
    5683: ("CoAP", "the CoAP service of constrained IoT devices"),
    4500: ("IPsec-NAT-T", "the IPsec VPN NAT traversal endpoint"),
    5060: ("SIP", "the SIP voice-call signalling service"),
    5900: ("VNC", "the VNC remote desktop"),
    6379: ("Redis", "the Redis key-value store"),
    8080: ("HTTP-alt", "an alternate web server"),
    8443: ("HTTPS-alt", "an alternate encrypted web server"),
    8883: ("MQTT-TLS", "the encrypted MQTT message broker"),
    7547: ("TR-069", "the router remote-management agent"),
    9100: ("JetDirect", "the raw printing service"),
    11211: ("memcached", "the memcached cache server"),
    27017: ("MongoDB", "the MongoDB database"),
    47808: ("BACnet", "the BACnet building-automation controller"),
    51820: ("WireGuard", "the WireGuard VPN endpoint"),
}

LOGIN_SERVICES = {"FTP", "SSH", "Telnet", "POP3", "IMAP", "RDP", "VNC", "MySQL", "MSSQL", "PostgreSQL"}
WEB_SERVICES = {"HTTP", "HTTP-alt"}

# ---- template sentences, by family and situation ---------------------------------------------------
# Fields: proto, proto_l (lower case), port, svc (short service name), svc_desc, icmp_kind, fwd_pkts, bwd_pkts, pkts, fwd_bytes,
# bwd_bytes, bytes, pkt_size, duration, pps, bps, iat, units (pings, datagrams, handshake requests, packets), syn, rst, fin, psh, ack, urg, win, ratio, app,
# category.

SERVICE = {
    "known_tcp": [
        "The flow goes to {svc_desc} ({svc}, {port}/{proto_l}).",
        "A client opens a {proto} connection to {svc_desc}, {svc} at {port}/{proto_l}.",
        "Its destination is {svc_desc}: {svc} over {proto} ({port}/{proto_l}).",
        "It reaches {svc}, {svc_desc} ({port}/{proto_l}).",
    ],
    "known_udp": [
        "The flow sends {proto} datagrams to {svc_desc} ({svc}, {port}/{proto_l}).",
        "{proto} datagrams go to {svc_desc}, the {svc} service at {port}/{proto_l}.",
        "Its destination is {svc_desc}: {svc} over connectionless {proto} ({port}/{proto_l}).",
    ],
    "port_zero": [
        "The {proto} packets are aimed at service number 0, a reserved value that nothing listens on.",
        "Its {proto} datagrams go to 0/{proto_l}, a reserved number no real application uses.",
        "The destination is 0/{proto_l}, a reserved value, so no service receives these {proto} datagrams.",
    ],
    "unknown_tcp": [
        "The flow targets {proto} port {port}, a number with no well-known service behind it.",
        "A {proto} probe goes to port {port}, where no standard service runs.",
        "Its destination is an unregistered {proto} port, {port}.",
    ],
    "unknown_udp": [
        "The flow sends {proto} datagrams to port {port}, which belongs to no well-known service.",
        "{proto} datagrams go to port {port}, an unregistered number.",
    ],
    "icmp": [
        "The flow consists of {proto} {icmp_kind}.",
        "These are {proto} {icmp_kind}, not application data.",
        "The sender emits {proto} {icmp_kind} and nothing else.",
    ],
    "other_proto": [
        "The flow uses IP protocol {proto}, with no transport ports.",
    ],
    "app": [
        "Deep packet inspection identifies the application as {app} ({category}).",
        "nDPI classifies the payload as {app}, in the {category} category.",
    ],
    "encrypted": [
        "Its payload is encrypted.",
        "The content travels encrypted.",
    ],
}

# What the exchange amounts to, read off its counts, flags and service (one sentence, usually included).
# These carry the semantics a reader (or a text encoder) needs; each is tied to a feature condition in
# FlowFacts.interpretation(), never to the label.
INTERPRETATION = {
    "ping": [
        "It is a ping: the sender fires {icmp_kind} at the host.",
        "The host is being pinged with {icmp_kind}.",
        "These pings are {proto} {icmp_kind}, each one asking the host to answer.",
    ],
    "big_ping": [
        "It is a ping with an oversized payload of {pkt_size}, far beyond the 56 bytes of an ordinary ping.",
        "The pings are padded to {pkt_size}, much heavier than ordinary pings.",
    ],
    "dns_query": [
        "It is a domain name lookup: one query to the name server and its answer of {bwd_bytes}.",
        "A domain name query is sent to the resolver, which answers with {bwd_bytes}.",
        "The name server resolves a domain name query and returns {bwd_bytes}.",
    ],
    "dns_unanswered": [
        "It is a domain name lookup that the name server never answers.",
        "A domain name query is sent and nothing comes back from the resolver.",
    ],
    "login_session": [
        "It is a login dialogue: {psh} short pushed messages, the rhythm of a username prompt and a password reply.",
        "The client and server trade {psh} tiny messages, as in typing a username and a password at a login prompt.",
        "Credential-sized exchanges dominate: {psh} pushed messages of a few bytes, then the login session closes.",
    ],
    "web_request": [
        "It is one short probe of the web server: a small request and a {bwd_bytes} answer.",
        "The client probes the web server with a single request and gets a small {bwd_bytes} page back.",
        "One web request is answered with only {bwd_bytes}, about the size of an error page.",
    ],
    "slow_hold": [
        "The connection is slow: the client holds it open for {duration}, dribbling fragments of {pkt_size} every {iat}.",
        "Data arrives slowly, a tiny piece of about {pkt_size} every {iat}, keeping a slow connection alive for {duration}.",
        "It is a slow, long-lived connection: partial data trickles in every {iat} and the request never completes.",
    ],
    "fingerprint_probe": [
        "The crafted segment advertises an unusual TCP window of {win}, as probes that fingerprint the remote operating system do.",
        "Its odd TCP window ({win}) is typical of operating system detection probes rather than of a real client.",
        "A crafted probe with a non-standard {win} window, the kind used to identify which operating system answers.",
    ],
    "odd_flag_probe": [
        "The segment sets unusual TCP flags ({odd}), a crafted probe that reveals how the remote operating system reacts.",
        "Flags no normal stack sends together ({odd}) mark this as an operating system detection probe.",
    ],
    "closed_probe": [
        "It is a probe of a closed port: the request is refused at once with {rst}.",
        "The probe finds a closed port, answered immediately with {rst}; nothing listens there.",
        "A single connection probe is rejected ({rst}), which shows the port is closed.",
    ],
    "half_open": [
        "It is a bare handshake request that is never completed, leaving a half-open connection behind.",
        "The handshake request is left half-open: no acknowledgement ever completes it.",
        "Only a handshake request, never followed up, so the connection stays half-open.",
    ],
    "abandoned_handshake": [
        "The server answers the handshake request with SYN-ACK, but the client never completes it, leaving a half-open connection.",
        "A half-open handshake: the server acknowledges the request and waits, and the client never follows up.",
    ],
    "empty_datagram": [
        "It is an empty datagram, with no payload at all, and nothing answers it.",
        "An empty datagram goes out and nothing answers.",
    ],
    "blind_datagram": [
        "It is a blind datagram to a destination where nothing listens, and nothing answers.",
        "The datagram is sent blindly, with no service to receive it and no answer.",
    ],
}

FLAGS = {
    "syn_unanswered": [
        "It carries {syn} and no acknowledgement: the TCP handshake is opened but never answered.",
        "Only a connection request is seen ({syn}), with no reply.",
        "The sender asks to connect ({syn}) and the target stays silent.",
    ],
    "syn_rst": [
        "The connection request ({syn}) is refused with {rst}.",
        "The target answers the handshake with {rst} and the exchange ends at once.",
        "A handshake is attempted and immediately reset ({rst}).",
    ],
    "syn_ack_abandoned": [
        "The flags show {syn} and {ack} acknowledgement(s) but no completed handshake.",
        "The client sends a connection request and ignores the server's SYN-ACK ({syn} in total).",
    ],
    "full_session": [
        "It is a complete TCP session: handshake, {psh} pushed data segments, and a teardown with {fin}.",
        "The connection completes its handshake, carries {psh} pushed segments and closes with {fin}.",
        "A full TCP exchange is seen, with {ack} acknowledgements and an orderly close ({fin}).",
    ],
    "open_no_close": [
        "The handshake completes ({syn}) but the connection is never closed within the flow.",
        "The session is established ({syn}, {ack} acknowledgements) and left open without a FIN.",
    ],
    "reset": [
        "The connection is torn down abruptly with {rst}.",
        "It ends with {rst} instead of an orderly close.",
    ],
    "odd_flags": [
        "The TCP header uses unusual flags ({odd}), a combination normal applications never send.",
    ],
    "window": [
        "The first segment advertises a TCP window of {win}.",
        "Its initial TCP window is {win}.",
    ],
    "plain_tcp": [
        "The TCP flags show {ack} acknowledgements and {psh} pushed segments.",
    ],
    "no_flags": [
        "Being {proto}, it carries no TCP handshake or flags.",
        "There is no connection setup: {proto} has no handshake.",
    ],
}

VOLUME = {
    "single": [
        "It is a single {pkt_size} packet.",
        "Only one packet of {pkt_size} is sent.",
        "A lone {pkt_size} packet makes up the whole flow.",
    ],
    "single_empty": [
        "It is a single packet with no payload.",
        "Only one header-only packet is sent.",
        "A lone empty packet makes up the whole flow.",
    ],
    "empty_payload": [
        "The packets carry no payload at all, only headers.",
        "No application data is transferred: every packet is header only.",
    ],
    "large_packets": [
        "The packets are large, {pkt_size} each on average, close to the maximum frame size.",
        "Each packet is heavily padded to about {pkt_size}.",
    ],
    "exchange": [
        "The sender transmits {fwd_pkts} ({fwd_bytes}) and receives {bwd_pkts} ({bwd_bytes}).",
        "In total, {fwd_pkts} carrying {fwd_bytes} went out and {bwd_pkts} carrying {bwd_bytes} came back.",
        "Outbound: {fwd_pkts} with {fwd_bytes} of payload; inbound: {bwd_pkts} with {bwd_bytes}.",
    ],
    "one_way": [
        "The sender transmits {fwd_pkts} ({fwd_bytes} of payload) and gets nothing back.",
        "Out went {fwd_pkts} carrying {fwd_bytes}; nothing returned.",
    ],
    "bulk": [
        "It moves a lot of data: {bytes} in {pkts}.",
        "The transfer is bulky, {bytes} over {pkts}.",
    ],
}

RATE = {
    "instant": [
        "All of it happens in a single instant, too fast to measure a rate.",
        "The {units} are back to back, with no measurable time between them.",
    ],
    "high": [
        "A barrage of {units} arrives at {pps} ({bps}).",
        "The {units} come in a torrent of {pps}, about {bps}.",
        "The rate is extreme: {units} at {pps}, about {bps}.",
    ],
    "moderate": [
        "Its rate is {pps}, about {bps}.",
        "It averages {pps} and {bps}.",
    ],
    "low": [
        "The rate is very low, only {pps} ({bps}).",
        "It trickles slowly at {pps}, barely {bps}.",
    ],
}

TIMING = {
    "instant": [
        "It begins and ends at once, with no measurable duration.",
    ],
    "short": [
        "The flow is short-lived, lasting {duration}.",
        "It is over within {duration}.",
        "Everything happens within {duration}.",
    ],
    "medium": [
        "The flow lasts {duration}, with packets {iat} apart on average.",
        "It spans {duration}; the mean gap between packets is {iat}.",
    ],
    "long": [
        "The flow is long-lived and slow: it stays active for {duration}, with {iat} between packets on average.",
        "It lasts a long {duration}, and packets come {iat} apart.",
        "The connection persists for {duration} with long pauses of about {iat}.",
    ],
}

DIRECTION = {
    "no_reply": [
        "It is strictly one-way: the destination never replies.",
        "Nothing comes back from the destination.",
        "The receiver stays silent, so the flow has no return direction.",
    ],
    "amplified": [
        "The answer is {ratio} times larger than the request.",
        "The responder returns {ratio} times more bytes than it receives.",
    ],
    "download": [
        "Most bytes flow back to the client: the response is {ratio} times the request.",
        "The return direction dominates, carrying {ratio} times the request's bytes.",
    ],
    "ack_only": [
        "The receiver only acknowledges and returns no data of its own.",
        "Replies carry no payload: the other side merely acknowledges.",
    ],
    "no_payload": [
        "Neither direction carries any payload; only headers are exchanged.",
        "No data flows either way, just bare headers.",
    ],
    "upload": [
        "The sender pushes far more than it receives.",
        "It is upload-heavy: the receiver sends back little.",
    ],
    "balanced": [
        "Both directions carry similar amounts of data.",
        "Request and reply are balanced in size.",
    ],
}

FAMILIES = {"volume": VOLUME, "rate": RATE, "timing": TIMING, "flags": FLAGS, "direction": DIRECTION}

# Concepts of a mission graph that fit what the flow was read to be (FlowFacts.interpretation()); they are
# drawn 3x more often for such flows. Words not in the mission's graph are simply not offered.
RELEVANT_CONCEPTS: dict[str, tuple[str, ...]] = {
    "ping": ("icmp", "echo", "request", "packet", "volume", "bandwidth", "saturation"),
    "big_ping": ("icmp", "echo", "bandwidth", "volume", "saturation", "packet", "amplification"),
    "dns_query": ("dns", "query", "resolver", "request", "amplification", "reflection", "domain"),
    "dns_unanswered": ("dns", "query", "resolver", "request", "domain"),
    "login_session": ("password", "credential", "login", "authentication", "account", "guessing", "failure",
                      "lockout", "spraying", "stuffing"),
    "web_request": ("vulnerability", "exploitable", "banner", "version", "software", "enumerate", "probe"),
    "slow_hold": ("exhaustion", "state", "request", "application", "endpoint", "client", "stateful", "connection"),
    "fingerprint_probe": ("os", "software", "version", "banner", "identifier", "probe", "host", "gather"),
    "odd_flag_probe": ("os", "software", "version", "banner", "identifier", "probe", "host", "gather"),
    "closed_probe": ("port", "service", "discovery", "enumerate", "sequential", "range", "probe", "host"),
    "half_open": ("syn", "state", "table", "stateful", "exhaustion", "tcp", "protocol"),
    "abandoned_handshake": ("syn", "ack", "state", "table", "stateful", "exhaustion", "tcp"),
    "blind_datagram": ("volume", "bandwidth", "packet", "saturation", "protocol", "udp"),
}

# Step 3: weaving sampled knowledge-graph concepts into the draft.
CONCEPTS = [
    "It relates to {concepts}.",
    "Associated concepts: {concepts}.",
    "This behaviour is linked to {concepts}.",
    "In threat terms it suggests {concepts}.",
    "Security knowledge connects it with {concepts}.",
]

# ---- the offline paraphraser's rules ---------------------------------------------------------------

# Word or phrase -> interchangeable wordings (each group is closed: any member may become any other).
SYNONYM_GROUPS: list[tuple[str, ...]] = [
    ("the flow", "the exchange", "the conversation"),
    ("The flow", "The exchange", "The conversation"),
    ("sends", "transmits", "emits"),
    ("sent", "transmitted", "emitted"),
    ("goes to", "is directed at", "is addressed to"),
    ("go to", "are directed at", "are addressed to"),
    ("lasts", "spans", "runs for"),
    ("never", "at no point"),
    ("very high", "extremely high"),
    ("very low", "extremely low"),
    ("small", "little"),
    ("tiny", "very small"),
    ("large", "big"),
    ("answer", "reply", "response"),
    ("client", "requester"),
    ("destination", "target"),
    ("about", "roughly", "around"),
    ("typical of", "characteristic of"),
    ("unusual", "atypical", "uncommon"),
    ("closes", "shuts down", "terminates"),
]

# Sentence joiners for merging two adjacent sentences.
CONNECTIVES = ["; ", "; in addition, ", "; moreover, ", ", and ", "; also, ", ", while "]

# Openers that may start a sentence moved away from the front.
OPENERS = ["", "", "Also, ", "Moreover, ", "In addition, ", "Notably, "]

# Active <-> passive rewrites for the template sentences above (regex, replacement). Applied at most once each.
VOICE_RULES: list[tuple[str, str]] = [
    (r"^The sender transmits (.+?) and receives (.+?)\.$", r"\1 are transmitted by the sender, which receives \2."),
    (r"^The server answers the connection request with (.+?), but the client never completes the handshake\.$",
     r"The connection request is answered by the server with \1, but the handshake is never completed by the client."),
    (r"^The target answers the handshake with (.+?), so nothing listens there and the probe ends at once\.$",
     r"The handshake is answered by the target with \1, so nothing listens there and the probe ends at once."),
    (r"^The client holds the connection open for (.+?), dribbling (.+?)\.$",
     r"The connection is held open by the client for \1, which dribbles \2."),
    (r"^A client opens a (\S+) connection to (.+?)\.$", r"A \1 connection to \2 is opened by a client."),
    (r"^The sender emits (.+?) and nothing else\.$", r"Nothing but \1 is emitted by the sender."),
    (r"^The responder returns (.+?) than it receives\.$", r"\1 than it receives are returned by the responder."),
    (r"^Deep packet inspection identifies the application as (.+?)\.$", r"The application is identified as \1 by deep packet inspection."),
    (r"^The connection completes its handshake, carries (.+?)\.$", r"Its handshake is completed, and the connection carries \1."),
    (r"^The first segment advertises (.+?)\.$", r"\1 is advertised by the first segment."),
]
