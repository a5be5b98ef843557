"""This machine's name and IP address, as results report them (``hostname``, ``node_ip``)."""
from __future__ import annotations

import functools
import platform
import socket


@functools.lru_cache(maxsize=1)
def host_identity() -> tuple[str, str]:
    """``(hostname, node_ip)`` of this machine, looked up once per process.

    The IP is the address of the interface that routes outward (as Ray's
    ``get_node_ip_address``; connecting a UDP socket sends nothing). Without a
    route it is the address the host name resolves to, else 127.0.0.1.
    """
    hostname = platform.node() or socket.gethostname()
    node_ip = ""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))
            node_ip = probe.getsockname()[0]
    except OSError:
        pass
    if not node_ip or node_ip.startswith("0."):
        try:
            node_ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            node_ip = "127.0.0.1"
    return hostname, node_ip
