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

# Initial TCP windows of scanners' crafted probes. nmap's OS-detection probes use 1, 3, 4, 16, 63, 128, 256, 512,
# 31,337 and 32,768: only these say "fingerprinting". Its plain SYN scan and host discovery use 1,024 (sometimes
# 2,048 to 4,096): crafted by a tool, but a window alone does not say what for. Ordinary stacks advertise 8 kB to
# 64 kB.
OS_PROBE_WINDOWS = frozenset({1, 3, 4, 16, 63, 128, 256, 512, 31337, 32768})
SCANNER_WINDOWS = frozenset({1024, 2048, 3072, 4096})
PROBE_WINDOWS = OS_PROBE_WINDOWS | SCANNER_WINDOWS

# The largest answer still "about the size of an error page" (a 404 or 403 page of a stock server is 0.2-1.5 kB).
ERROR_PAGE_MAX = 1500
# A request header of a browser-like client (request line, Host, User-Agent, Accept...) is 200 bytes or more: a
# flow whose client segments all stay below this cannot have sent one whole.
FULL_HEADER_MIN = 200
# Services whose answer can be far larger than the request that asked for it (the reflectors of amplification
# attacks: DNS ANY, NTP monlist, SSDP M-SEARCH, CLDAP rootDSE, SNMP GetBulk, memcached stats, CoAP, WS-Discovery).
REFLECTOR_SERVICES = {"DNS", "NTP", "SSDP", "LDAP", "SNMP", "memcached", "CoAP", "WS-Discovery", "NetBIOS",
                      "mDNS"}

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
        "Its {proto} datagrams go to 0/{proto_l}, a reserved number no application listens on.",
        "The destination is 0/{proto_l}, a reserved value, so no service receives these {proto} datagrams.",
    ],
    # A UDP flow sent from the service's port: the service's answers (FlowFacts.answers_only).
    "from_udp": [
        "The datagrams come from {svc_desc} ({svc}, {port}/{proto_l}) of another host.",
        "Its sender is {svc_desc}: {svc} over {proto}, from {port}/{proto_l}.",
    ],
    "unknown_tcp": [
        "The flow targets {proto} port {port}, a number with no well-known service behind it.",
        "{proto} traffic goes to port {port}, where no standard service runs.",
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

# What the exchange amounts to, read off its counts, flags and service: the first sentence of every draft
# whose flow makes it clear. These carry the semantics a reader (or a text encoder) needs: what the sender
# does, and what that does to the receiver. Each is tied to a feature condition in
# FlowFacts.interpretation(), never to the label.
INTERPRETATION = {
    "ping": [
        "It is a ping: echo requests hit the host, and each one demands an echo reply.",
        "The host is pinged with {icmp_kind}; every request forces it to send an echo reply.",
        "Echo requests ({proto} pings) reach the host, which has to answer every one of them.",
    ],
    "big_ping": [
        "It is a ping with an oversized payload of {pkt_size}, far beyond the 56 bytes a ping needs, "
        "so every echo request eats bandwidth.",
        "The pings are padded to {pkt_size}, far heavier than an echo request needs, loading the link.",
    ],
    "dns_query": [
        "It is a domain name lookup: the resolver answers a hostname query with {bwd_bytes}.",
        "A hostname query goes to the name server, and the resolver answers with {bwd_bytes}.",
        "The name server resolves a domain name query: the resolver returns {bwd_bytes} for a hostname lookup.",
    ],
    "dns_unanswered": [
        "It is a domain name lookup that the resolver never answers: a hostname query without reply.",
        "A hostname query is sent to the name server and nothing comes back from the resolver.",
    ],
    "login_session": [
        "It is a login dialogue with the {svc} server: {psh} short pushed messages trade a username and a "
        "password, and the session closes soon after, as when a login attempt fails.",
        "The client tries to log in: {psh} tiny messages carry a username and a password to the {svc} login "
        "prompt, then the connection is closed without any work done.",
        "Credential-sized exchanges dominate: {psh} pushed messages of a few bytes at the {svc} login prompt, "
        "then the session ends, the pattern of a failed password attempt.",
    ],
    "web_request": [
        "It is one short request to the web server: a small request and a {bwd_bytes} answer, about the size of an "
        "error page for a missing or protected page.",
        "The client sends the web server a single request and gets only {bwd_bytes} back, the size of an error "
        "page (a page missing or access refused).",
        "One web request is answered with only {bwd_bytes}, about the size of an error page rather than content.",
    ],
    "slow_hold": [
        "The client keeps the connection open for {duration} but sends only a {pkt_size} fragment every {iat}, "
        "never completing its request, so the server keeps waiting.",
        "Data arrives slowly, a tiny piece of about {pkt_size} every {iat}: the request is never finished and "
        "the server holds the connection open for {duration}.",
        "It is a slow, long-lived connection: partial data trickles in every {iat}, the request never completes "
        "and the server waits for {duration}.",
    ],
    "fingerprint_probe": [
        "A crafted probe with an unusual TCP window of {win}; how the target's TCP stack answers it reveals its "
        "system software: which operating system and version it runs.",
        "Its odd TCP window ({win}) marks a crafted probe from a tool: the target's reply reveals "
        "its operating system, the system software and its version.",
        "A crafted probe with a non-standard {win} window, the kind used to identify the system software "
        "(operating system and version) that answers.",
    ],
    "odd_flag_probe": [
        "The segment sets unusual TCP flags ({odd}), a crafted probe whose answer reveals the target's system "
        "software: its operating system and version.",
        "Flags no TCP stack sends together ({odd}) mark this as a crafted probe that identifies the remote "
        "system software (its operating system).",
    ],
    "crafted_syn": [
        "The connection request advertises a window of only {win}, far below what TCP stacks use: the packet "
        "is crafted by a tool.",
        "A tool-crafted connection request: its TCP window of {win} is one no TCP stack uses.",
    ],
    # UDP answers from a service port arriving at a host that sent nothing in this flow (reflection targets).
    "reflected_answer": [
        "It is a stream of {svc} answers: {answers} of {pkt_size} each arrive from port {port} of another host, "
        "without any request from this host in the flow.",
        "The {svc} service at {port}/{proto_l} of another host sends {answers} of {pkt_size} each, and this host "
        "sent it nothing in the flow.",
        "Answers of the {svc} service ({port}/{proto_l}), {pkt_size} each, land on this host without any request "
        "from it in the flow.",
    ],
    "big_reflected_answer": [
        "It is a stream of {svc} answers of {pkt_size} each, arriving from port {port} of another host without any "
        "request from this host: answers many times the size of a {svc} request, the payload of an amplification.",
        "Oversized {svc} answers ({answers} of {pkt_size} each, from {port}/{proto_l}) reach this host, which "
        "sent no request in the flow: unrequested, amplified replies.",
    ],
    # A lone TCP segment (ACK or RST, no SYN, no payload) that belongs to no connection seen in the flow.
    "stray_segment": [
        "It is a lone TCP segment with the {flagword} flag and no payload; no handshake precedes it in the flow, "
        "so it belongs to no connection the receiver knows and must be checked and discarded.",
        "A bare {flagword} segment without payload and without a handshake before it: the receiver's TCP stack has "
        "to search its connection table and finds no connection it belongs to.",
        "One header-only TCP {flagword} segment, outside any connection (no handshake precedes it in the flow).",
    ],
    # Host discovery: a bare probe, one of a few to each of many hosts.
    "host_probe": [
        "It is a bare probe of {port}/{proto_l} with no payload, the kind that only asks whether the host responds.",
        "A header-only probe to {port}/{proto_l}: its only use is to see whether the host responds at all.",
    ],
    # A short TCP session to a service that is not web or login, where the service answers with data.
    "banner_read": [
        "The client connects to {port}/{proto_l}, sends {fwd_bytes} and reads the {bwd_bytes} the service "
        "sends back; the flow is over within {duration}.",
        "A short connection to {port}/{proto_l}: {fwd_bytes} out, {bwd_bytes} of the service's answer back, all "
        "within {duration}.",
    ],
    # A web answer that trickles out in small pieces while the client only acknowledges (slow read).
    "slow_answer": [
        "After one request the client sends nothing but acknowledgements, and the web server's answer comes out "
        "in small pieces: {bwd_bytes} in {bwd_pkts} over {duration}.",
        "The web server's answer is drawn out: {bwd_bytes} in {bwd_pkts} over {duration}, while the client sends "
        "nothing but acknowledgements after its one request.",
    ],
    # An MQTT session that is only a CONNECT (username and password) and a CONNACK (FlowFacts.mqtt_login).
    "mqtt_login": [
        "It is an MQTT login and nothing more: one client message of {fwd_bytes}, the CONNECT that carries the "
        "username and password, a {bwd_bytes} answer from the broker, and the session ends without a message "
        "published.",
        "The client sends the broker a single {fwd_bytes} message, a CONNECT with its credentials, gets {bwd_bytes} "
        "back and leaves within {duration}, publishing nothing.",
    ],
    # Web exchanges whose answer is larger than an error page: a page is built and sent back.
    "web_page": [
        "It is a short web exchange: {fwd_bytes} of requests and {bwd_bytes} of pages sent back within {duration}.",
        "The client sends {fwd_bytes} of requests to the web server, which answers with {bwd_bytes} of pages, all "
        "within {duration}.",
    ],
    "closed_probe": [
        "It is a probe of a closed service: the connection request is refused at once with {rst}, which tells "
        "the sender nothing listens at {port}/{proto_l}.",
        "The probe finds a closed service at {port}/{proto_l}, answered immediately with {rst}; nothing listens there.",
        "A single connection probe is rejected ({rst}), which shows that {port}/{proto_l} is closed.",
    ],
    "half_open": [
        "It is a bare connection request that is never completed, leaving a half-open connection behind.",
        "The handshake request is left half-open: no acknowledgement ever completes it.",
        "Only a handshake request, never followed up, so the connection stays half-open.",
    ],
    "abandoned_handshake": [
        "The server answers the handshake request with SYN-ACK, but the client never sends the final "
        "acknowledgement, leaving a half-open connection in the server's backlog of pending connections.",
        "A half-open handshake: the server acknowledges the request and reserves a slot in its connection "
        "backlog, and the client never follows up.",
        "The client abandons the handshake after the server's SYN-ACK, so the half-open connection occupies "
        "the server's backlog until it times out.",
    ],
    "empty_datagram": [
        "It is an empty probe: a datagram without any payload checks whether a service listens at "
        "{port}/{proto_l}, and nothing answers, so it is closed or filtered.",
        "A payload-less probe tests whether anything listens at {port}/{proto_l}; no answer comes back.",
        "An empty datagram goes to {port}/{proto_l} only to see whether a service answers; none does.",
    ],
    "blind_datagram": [
        "It is an unsolicited datagram of {pkt_size} to {port}/{proto_l}, where nothing answers; the payload is "
        "simply dropped.",
        "Unsolicited payload ({pkt_size}) hits {port}/{proto_l}, where no service answers, and is dropped.",
        "The datagram is sent blindly, {pkt_size} of payload with no service to receive it and no answer.",
    ],
    "unreachable_error": [
        "The host reports the destination unreachable: the error a host sends back for a packet that reached a "
        "closed service.",
        "These are error messages saying the destination is unreachable, the answer to packets sent to a service "
        "that does not exist.",
    ],
}

# What such behaviour does or is for: general knowledge about the reading above, one sentence that may follow
# it (the flow itself shows the reading; this sentence says why it matters).
IMPLICATION = {
    "ping": [
        "Answering a stream of such echo requests keeps the host and its link busy with nothing but replies.",
        "Every echo request costs the host a reply, so a stream of them ties up its link and processor.",
    ],
    "big_ping": [
        "Padded echo requests like these fill the link with useless payload and keep the host busy replying.",
    ],
    "dns_query": [
        "Each lookup makes the resolver work and send back more bytes than it received.",
        "The resolver has to look up and answer every such query.",
    ],
    "dns_unanswered": [
        "The lookup fails, as when the resolver is too busy or cannot be reached.",
    ],
    "login_session": [
        "A session that ends right after the credentials are exchanged usually means the password was refused, "
        "and repeating it with one password after another is how accounts are guessed.",
        "Repeated short login sessions like this one try password after password against the account.",
    ],
    "web_request": [
        "A client that gets only an error page back fetches no content: it learns just whether the page exists "
        "or lets it in.",
        "Tools that try many paths, or many logins, on a web server see exactly this: small requests answered "
        "with small error pages.",
    ],
    "slow_hold": [
        "Holding many connections open like this leaves the web server no free workers for anyone else.",
        "A server that waits this way for every unfinished request runs out of connection slots.",
    ],
    "fingerprint_probe": [
        "Tools compare the replies to such probes with known TCP stacks to tell which system and version the host runs.",
    ],
    "odd_flag_probe": [
        "Tools compare the replies to such probes with known TCP stacks to tell which system and version the host runs.",
    ],
    "crafted_syn": [
        "Only a packet-crafting tool sends such a request; TCP stacks open connections with far larger windows.",
    ],
    "closed_probe": [
        "Probing service numbers one after another this way maps which services a host exposes.",
    ],
    "big_reflected_answer": [
        "Servers send such large answers to small requests; a sender that forges the victim's address as the "
        "source turns them into a multiplied stream aimed at the victim.",
        "Small requests with a forged source address make the servers send these large answers to this host.",
    ],
    "stray_segment": [
        "Each such segment costs the receiver (and any stateful firewall in front of it) a search of its "
        "connection table.",
    ],
    "host_probe": [
        "A probe like this one, sent to host after host, shows which addresses are alive.",
    ],
    "half_open": [
        "Half-open connections hold server resources until they time out.",
    ],
    "abandoned_handshake": [
        "Many such half-open connections fill the server's backlog until no new connection can be accepted.",
        "Each half-open connection holds server memory until it times out; enough of them lock everyone else out.",
    ],
    "empty_datagram": [
        "Probing service numbers one after another this way maps which services a host exposes.",
    ],
    "blind_datagram": [
        "Unsolicited traffic like this only costs the receiver bandwidth and processing.",
    ],
    "unreachable_error": [
        "A host answers this way when packets keep arriving at a service that does not exist.",
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
        "The TCP header uses unusual flags ({odd}), a combination applications never send.",
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
    "round_trip": [
        "The answer comes back within {duration}.",
        "The reply arrives {duration} after the request.",
        "Request and answer are {duration} apart.",
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
        "The flow is long-lived: it stays active for {duration}, with {iat} between packets on average.",
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

# Host context (FlowFacts.context_reading(), from packetclip.language.context): what the flow's source and
# destination did in the same window, as an analyst reads it. Fields: window ("10 seconds"), server (the service, else "the same host"), src_flows
# ("4 flows"), src_n (bare number), src_hosts ("6 hosts"), src_addrs ("4,361 addresses"), pair_flows, pair_ports, pair_pps, dst_flows, dst_srcs,
# dst_rate ("650 per second"), pair_noreply / pair_reset / pair_answered (shares in words: "most", "all"...).
CONTEXT = {
    "backscatter": [
        "This host sends back {src_n} such unreachable errors to {src_addrs} within {window}: the trace of a "
        "volumetric deluge of connectionless packets, from forged addresses, hitting its closed services.",
        "Within {window} this host returns {src_n} of these errors to {src_addrs}, the backscatter of a "
        "massive barrage of unsolicited connectionless traffic aimed at it from spoofed senders.",
    ],
    "swarm_syn": [
        "TCP handshake requests pour in: {dst_flows} flows within {window} from {dst_srcs} different, most "
        "likely spoofed, addresses (about {dst_rate}); this one is never completed and waits in the server's "
        "backlog.",
        "A TCP handshake attack: {dst_flows} flows from {dst_srcs} different, most likely spoofed, addresses "
        "hit the same target within {window} (about {dst_rate}); this connection initiation is never completed "
        "by its sender.",
    ],
    "swarm_echo": [
        "The target is bombarded with {dst_flows} echo requests from {dst_srcs} different addresses within "
        "{window}, about {dst_rate}; it must answer every one, and its link and processor are saturated.",
        "A barrage of {dst_flows} network-layer echo messages from {dst_srcs} addresses within {window} (about "
        "{dst_rate}), no ports, no transport protocol, each demanding a reply.",
    ],
    "swarm_udp": [
        "A volumetric deluge of {dst_flows} connectionless packets from {dst_srcs} different addresses within "
        "{window} (about {dst_rate}) saturates the host's bandwidth.",
        "The target is hit by {dst_flows} unsolicited connectionless packets from {dst_srcs} different, most "
        "likely spoofed, addresses within {window}, about {dst_rate}, a volumetric barrage that saturates its "
        "bandwidth.",
    ],
    "swarm_dns": [
        "The resolver receives {dst_flows} queries from {dst_srcs} different addresses within {window}, about "
        "{dst_rate}, far more lookups than any network of clients asks, exhausting it.",
        "This query is one of {dst_flows} that hit the same name server from {dst_srcs} addresses within "
        "{window} (about {dst_rate}), overwhelming the resolver.",
    ],
    "swarm": [
        "The target receives {dst_flows} flows from {dst_srcs} different addresses within {window}, about "
        "{dst_rate}, a load from many sources at once.",
    ],
    "swarm_stray": [
        "The target receives {dst_flows} such segments from {dst_srcs} different, most likely spoofed, addresses "
        "within {window} (about {dst_rate}), none of them part of a connection.",
        "{dst_flows} bare TCP segments outside any connection hit the same target from {dst_srcs} different, most "
        "likely spoofed, addresses within {window}, about {dst_rate}.",
    ],
    "sweep": [
        "Its source tries {pair_ports} different ports of the same host within {window}, {pair_noreply} of them "
        "unanswered: it is mapping which services the host exposes, one port after another.",
        "This probe is one of {pair_flows} that the same source sends to {pair_ports} different ports of one "
        "host within {window}, enumerating open and closed ports one after another.",
    ],
    "sweep_fingerprint": [
        "Its source sends {pair_flows} crafted probes to the same host within {window}, {pair_reset} answered "
        "with a reset; comparing how the host's TCP stack answers each unusual probe identifies the system "
        "software and its version.",
        "This crafted probe is one of {pair_flows} that the same source sends to one host within {window}; the "
        "odd windows and flags, and the replies they draw, fingerprint which system and version the host runs.",
    ],
    "repeat_login": [
        "It is one of {pair_flows} login sessions the same source opens to the same {svc} server within "
        "{window}, one after another: a password tried, refused, and the next one tried.",
        "The source repeats the {svc} login {pair_flows} times within {window} against the same account "
        "prompt, guessing credentials from a list.",
    ],
    "hold_many": [
        "Incomplete HTTP headers trickle in on {pair_flows} parallel connections that the same source keeps "
        "open to one web server, exhausting its connection pool.",
        "Incomplete HTTP headers arrive on {pair_flows} parallel connections that one source holds open to the "
        "same web server, each sending a partial header now and then, exhausting its connection pool.",
    ],
    "repeat_web": [
        "It is one of {pair_flows} short requests the same source fires at the same web server within {window}, "
        "each answered with an error-page-sized reply: an automated client, not a person browsing.",
        "The source sends {pair_flows} such requests to one web server within {window}, getting error-page-sized "
        "answers rather than content, one request after another.",
    ],
    "repeat_pair": [
        "It is one of {pair_flows} flows the same source sends to the same host within {window}, about {pair_pps}.",
    ],
    "reflected_swarm": [
        "This host receives {dst_flows} such {svc} answers from {dst_srcs} different servers within {window}, about "
        "{dst_rate}, without asking them anything.",
        "The answers converge on this host: {dst_flows} flows of {svc} answers from {dst_srcs} different servers "
        "within {window} (about {dst_rate}).",
    ],
    "repeat_stray": [
        "It is one of {pair_flows} such segments the same source sends to the same host within {window} (about "
        "{pair_pps}), each outside any connection.",
        "The source sends {pair_flows} of these segments without a handshake to the same host within {window}, "
        "about {pair_pps}.",
    ],
    "host_sweep": [
        "Its source reaches {src_hosts} within {window} with only {pair_ports_n} to each: checking host after "
        "host which addresses respond, not using any of them.",
        "The same source probes {src_hosts} within {window}, trying {pair_ports_n} on each, to learn which "
        "addresses respond.",
    ],
    "repeat_web_page": [
        "It is one of {pair_flows} connections the same source makes to the same web server within {window}, each "
        "a request answered with a page: far more than a person browsing would make.",
        "The source opens {pair_flows} such connections to one web server within {window}, every one answered with "
        "a page of its own.",
    ],
    "hold_many_request": [
        "The same source keeps {pair_flows} such connections open to one web server, each sending a little request "
        "data now and then and never finishing, which exhausts its connection pool.",
        "{pair_flows} parallel connections from one source to the same web server each trickle request data and "
        "never complete it, exhausting the server's connection pool.",
    ],
    # Counts only: whether quiet traffic is harmless is the label's business, not something a flow shows.
    "quiet": [
        "Its source is quiet: it opens only {src_flows} to {src_hosts} within {window}, and "
        "{pair_answered} of those to this host are answered.",
        "A low-volume source: {src_flows} to {src_hosts} within {window}, {pair_answered} of those to this "
        "host answered.",
    ],
    "repeat_syn": [
        "It is one of {pair_flows} handshake requests the same source sends to {server} within {window} "
        "(about {pair_pps}); none carries data and each leaves a half-open connection behind.",
        "The source opens {pair_flows} half-open connections to {server} within {window}, about {pair_pps}: "
        "bare connection requests that are never completed.",
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
    "web_request": ("vulnerability", "exploitable", "banner", "version", "software", "enumerate", "probe",
                    "wordlist", "http", "login", "password", "credential"),
    "slow_hold": ("exhaustion", "state", "request", "application", "endpoint", "client", "stateful", "connection"),
    "fingerprint_probe": ("os", "software", "version", "banner", "identifier", "probe", "host", "gather"),
    "odd_flag_probe": ("os", "software", "version", "banner", "identifier", "probe", "host", "gather"),
    "closed_probe": ("port", "service", "discovery", "enumerate", "sequential", "range", "probe", "host"),
    "half_open": ("syn", "state", "table", "stateful", "exhaustion", "tcp", "protocol"),
    "abandoned_handshake": ("syn", "ack", "state", "table", "stateful", "exhaustion", "tcp"),
    "blind_datagram": ("volume", "bandwidth", "packet", "saturation", "protocol", "udp"),
    "reflected_answer": ("reflection", "reflector", "amplification", "spoofed", "spoof", "udp", "volume"),
    "big_reflected_answer": ("reflection", "reflector", "amplification", "amplify", "spoofed", "spoof", "bandwidth",
                             "volume"),
    "stray_segment": ("ack", "rst", "tcp", "state", "table", "stateful", "exhaustion", "flood"),
    "host_probe": ("host", "discovery", "remote", "ip", "block", "address", "ping", "sweep", "range"),
    "banner_read": ("service", "version", "banner", "software", "discovery", "port", "application"),
    "web_page": ("http", "request", "application", "exhaustion", "service", "web", "resource"),
    "mqtt_login": ("password", "credential", "login", "authentication", "account", "guessing", "default",
                   "mqtt", "failure"),
    "slow_answer": ("slow", "exhaustion", "state", "connection", "application", "endpoint", "http"),
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
