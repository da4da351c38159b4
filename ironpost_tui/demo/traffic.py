"""The demo lab's hosts, run inside its namespace: a client that browses,
resolves and pings (v4 and v6), a scanner and a SYN flooder, in a loop.

Raw IPv4 packets are built here with struct (no extra dependency), and go only
to the lab's host side, 198.18.200.1.
"""

from __future__ import annotations

import random
import socket
import struct
import time

from ironpost_tui.demo.lab import CLIENT4, CLIENT6, DNS_PORT, FLOODER4, HOST4, HOST6, SCANNER4, WEB_PORT

CYCLE_SECS = 20.0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def tcp_syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    csum = _checksum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, socket.IPPROTO_TCP, 0, s, d
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


def icmp_echo(seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 0x1D0, seq) + b"ironpost-demo"
    return body[:2] + struct.pack("!H", _checksum(body)) + body[4:]


def benign(raw_icmp: socket.socket, seq: int) -> None:
    try:
        with socket.create_connection((HOST4, WEB_PORT), timeout=0.5, source_address=(CLIENT4, 0)) as c:
            c.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
            c.recv(256)
    except OSError:
        pass
    for family, src, dst in ((socket.AF_INET, CLIENT4, HOST4), (socket.AF_INET6, CLIENT6, HOST6)):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((src, 0))
            u.sendto(b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x04demo\x00\x00\x01\x00\x01", (dst, DNS_PORT))
    raw_icmp.sendto(icmp_echo(seq), (HOST4, 0))


def scan(raw: socket.socket) -> None:
    for port in random.sample(range(1, 1024), 200):
        raw.sendto(tcp_syn(SCANNER4, HOST4, 40000 + port, port), (HOST4, 0))
        time.sleep(0.002)


def flood(raw: socket.socket, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(50):
            raw.sendto(tcp_syn(FLOODER4, HOST4, random.randint(1024, 65535), 80), (HOST4, 0))
        time.sleep(0.01)


def main() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
    raw_icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    raw_icmp.bind((CLIENT4, 0))
    seq = 0
    start = time.monotonic()
    phase_done: set[tuple[int, str]] = set()
    while True:
        seq += 1
        benign(raw_icmp, seq)
        t = time.monotonic() - start
        cycle, offset = int(t // CYCLE_SECS), t % CYCLE_SECS
        if offset > 3 and (cycle, "scan") not in phase_done:
            phase_done.add((cycle, "scan"))
            scan(raw)
        if offset > 8 and (cycle, "flood") not in phase_done:
            phase_done.add((cycle, "flood"))
            flood(raw, 3.0)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
