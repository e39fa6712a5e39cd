"""The metadata proxy of a lab router: an HTTP server where Neutron's haproxy listens.

Neutron's L3 agent starts one haproxy per legacy router, inside the ``qrouter-`` namespace
(``neutron/agent/metadata/driver.py``: ``after_router_added`` →
``spawn_monitored_metadata_proxy``), bound to ``0.0.0.0`` (``::`` when the host has IPv6) on
``[DEFAULT] metadata_port`` (9697). The router's nat PREROUTING redirects a VM's
``169.254.169.254:80`` there (:func:`nodetrace.neutron.l3_agent.router_iptables`). haproxy adds
``X-Neutron-Router-ID`` and hands the request to the metadata agent's unix socket; the agent
finds the instance from the router and the request's source address and asks Nova.

The lab has neither the agent nor Nova, so this proxy answers by itself, from the scenario:
``GET /latest/meta-data/instance-id`` gives the instance UUID (the port's ``device_id``) of the
VM whose address sent the request, on one of the router's networks, as the agent would find it;
``GET /`` lists ``latest``; anything else, or an address the router does not know, is a 404.
The router namespace has IPv6 off in the lab, so the proxy binds ``0.0.0.0``.

It runs as a lab daemon: started with ``python -m nodetrace.lab.metadata`` inside the router's
namespace, it binds, detaches, then writes its pid file, so the socket listens once the pid is
recorded in the lab's ledger; ``lab down`` stops it by that pid (its command line names the
node's run folder, as the Open vSwitch daemons' do).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from nodetrace.lab.resources import Resources
    from nodetrace.neutron.generate import NodeState
    from nodetrace.neutron.l3_agent import RouterState

BIND_ADDRESS = "0.0.0.0"
"""``spawn_monitored_metadata_proxy``'s default ``bind_address`` (IPv6 is off in the lab)."""
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What one router's proxy needs: where to listen and whom it knows."""

    router_id: str
    port: int
    instances: dict[str, str]
    """Source address → instance UUID, for the VMs on the router's internal networks."""

    def to_json(self) -> str:
        return json.dumps(
            {"router_id": self.router_id, "port": self.port, "instances": self.instances},
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ProxyConfig:
        data = json.loads(text)
        return cls(str(data["router_id"]), int(data["port"]), dict(data["instances"]))


def proxy_config(state: NodeState, router: RouterState) -> ProxyConfig:
    """The proxy of ``router``: its instances are the VM ports (of any node) on the networks
    it has an internal port on, by fixed IPv4 address."""
    from nodetrace.neutron.l3_agent import METADATA_PORT

    networks = {p.network.id for p in router.internal}
    instances = {
        str(ip): port.device_id
        for port in state.scenario.ports
        if port.network in networks
        for ip in port.ips(4)
    }
    return ProxyConfig(router.router.id, METADATA_PORT, instances)


def pidfile_path(rundir: Path, router: RouterState) -> Path:
    return rundir / f"metadata-proxy-{router.router.id}.pid"


def start_metadata_proxies(
    res: Resources, state: NodeState, *, lab: str, rundir: Path
) -> tuple[int, ...]:
    """One proxy per router of the node, in its namespace; the daemons' pids (in the ledger).

    ``rundir`` is the node's run folder (it exists already and the lab removes it)."""
    from nodetrace.lab.router import router_netns
    from nodetrace.lab.run import run

    pids = []
    for router in state.routers:
        config = rundir / f"metadata-proxy-{router.router.id}.json"
        config.write_text(proxy_config(state, router).to_json() + "\n", encoding="utf-8")
        pidfile = pidfile_path(rundir, router)
        log = rundir / f"metadata-proxy-{router.router.id}.log"
        argv = [sys.executable, "-m", "nodetrace.lab.metadata", "--config", str(config)]
        argv += ["--pidfile", str(pidfile), "--log", str(log)]
        run(argv, netns=router_netns(lab, router), timeout=10)
        pids.append(res.started_daemon(pidfile, rundir))
    return tuple(pids)


# --- the proxy itself --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    config: ClassVar[ProxyConfig]
    log_path: ClassVar[Path | None] = None
    server_version = "nodetrace-metadata-proxy"

    def do_GET(self) -> None:
        source = self.client_address[0]
        instance = self.config.instances.get(source)
        if instance is None:
            self._answer(404, f"no instance with address {source} behind this router\n")
        elif self.path == INSTANCE_ID_PATH:
            self._answer(200, instance)
        elif self.path == "/":
            self._answer(200, "latest\n")
        else:
            self._answer(404, f"{self.path}: not served here\n")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Neutron-Router-ID", self.config.router_id)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{self.client_address[0]} {format % args}\n")


class _Server(socketserver.TCPServer):
    # TCPServer, not HTTPServer: that one looks its own name up (getfqdn) when it binds.
    allow_reuse_address = True


def _detach() -> None:
    """Fork twice and drop the terminal, as a daemon does; the caller's ``run`` returns when
    the first child exits and every copy of its output pipes is closed."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _write_pidfile(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodetrace.lab.metadata")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--pidfile", required=True, type=Path)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    config = ProxyConfig.from_json(args.config.read_text(encoding="utf-8"))
    _Handler.config = config
    _Handler.log_path = args.log
    server = _Server((BIND_ADDRESS, config.port), _Handler)  # listening before detaching
    _detach()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    _write_pidfile(args.pidfile)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
