"""Does TLS verify, for which name, and for how long."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

from ..config import Config, Target
from ..model import describe_error
from ..parallel import Deadline
from .base import MAX_NODE_LINES, Checkup, Finding, ok, problem, warning

CERT_WARN_DAYS = 14


def _handshake(config: Config, target: Target, deadline: Deadline, name: str | None
               ) -> dict[str, Any]:
    """One TLS handshake that verifies the chain; the name too when `name` is given."""
    context = ssl.create_default_context(cafile=config.tls_ca_file)
    context.check_hostname = name is not None
    if config.tls_cert_file:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    raw = socket.create_connection((target.host, target.port),
                                   timeout=max(0.05, deadline.remaining()))
    with raw, context.wrap_socket(raw, server_hostname=name or target.host) as tls:
        return tls.getpeercert() or {}


def _names(cert: dict[str, Any]) -> list[str]:
    return [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS",
                                                                                "IP Address")]


def check_tls(c: Checkup) -> Iterator[Finding]:
    config = c.config
    tls_seeds = [t for t in config.targets if t.tls]
    if config.sentinel is not None and config.sentinel.tls:  # the sentinels, then the nodes
        tls_seeds = [Target(h, p, tls=True) for h, p in config.sentinel.addresses]
        tls_seeds += [Target(n.host, n.port, tls=True) for n in c.topology.nodes if n.host]
    if not tls_seeds:
        yield warning("tls", "no TLS: commands, data and the password cross the network in "
                      "clear", "use rediss:// URLs where the network is not trusted")
        return
    if config.tls_insecure:
        yield warning("tls", "--tls-insecure: the server's certificate is not verified",
                      "give --tls-ca-file (and --tls-server-name) instead")
    for target in tls_seeds[:MAX_NODE_LINES]:
        yield from _check_one_tls(config, target)


def _check_one_tls(config: Config, target: Target) -> Iterator[Finding]:
    deadline = Deadline(config.timeout)
    where = target.address
    # with --tls-insecure the run does not verify: what verification would say is a warning
    bad = warning if config.tls_insecure else problem
    try:
        cert = _handshake(config, target, deadline, None)
    except ssl.SSLCertVerificationError as exc:
        yield bad("tls", f"{where}: certificate not verified: {exc.verify_message}",
                  "give the CA that signed it: --tls-ca-file PATH")
        return
    except (ssl.SSLError, OSError) as exc:
        yield problem("tls", f"{where}: TLS handshake failed: {describe_error(exc)}")
        return
    name = config.tls_server_name or target.host
    names = _names(cert)
    try:
        _handshake(config, target, deadline, name)
    except ssl.SSLCertVerificationError:
        fixes = [f"--tls-server-name {names[0]}"] if names else []
        yield bad("tls", f"{where}: the certificate names {', '.join(names) or 'no host'}, "
                      f"not {name!r}", *fixes)
    except (ssl.SSLError, OSError) as exc:
        yield problem("tls", f"{where}: TLS handshake failed: {describe_error(exc)}")
    else:
        yield ok("tls", f"{where}: certificate verified for {name!r}")
    if "notAfter" in cert:
        days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
        if days < 0:
            yield problem("tls", f"{where}: the certificate expired {-days:.0f} days ago")
        elif days < CERT_WARN_DAYS:
            yield warning("tls", f"{where}: the certificate expires in {days:.0f} days")
        else:
            yield ok("tls", f"{where}: the certificate expires in {days:.0f} days")
