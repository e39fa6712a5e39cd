"""Capture a node's network state into a snapshot bundle, read-only, with the standard library only.

Compute nodes often cannot install packages, so this file imports nothing but the standard
library (and nothing of nodetrace) and runs on Python 3.6 and later (the system Python of
RHEL 8): copy it to a node and run ``python3 collect.py -o out.tar.gz``. ``nodetrace collect``
wraps the same code.

Every command is an argument list (never a shell string), runs with a timeout, and is recorded in
the bundle's ``manifest.json`` with its exit status, time and error output; a missing tool or a
failing command is written down, never fatal. Nothing here changes the node: every command only
reads (``*-save``, ``show``, ``list``, ``dump-flows``, ``fdb/show``, ``sysctl -a``, ``conntrack -L``).
The bundle format is described in docs/formats.md ("Node snapshots").
"""

# Python 3.6 has neither ``from __future__ import annotations`` nor ``X | None`` nor builtin
# generics, so this module keeps typing's spelled-out forms on purpose.
# ruff: noqa: UP006, UP017, UP021, UP022, UP035, UP045

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, NamedTuple, Optional, Tuple

Log = Callable[[str], None]

FORMAT_NAME = "nodetrace-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

DEFAULT_TIMEOUT = 30.0
STDERR_KEEP = 4000
"""Characters of a command's error output kept in the manifest (the start says what went wrong)."""

SYSCTL_PATTERN = (
    r"^net\.(bridge\.bridge-nf-[a-z0-9-]+"
    r"|ipv4\.ip_forward"
    r"|ipv4\.conf\.[^.]+\.(rp_filter|forwarding|accept_local|arp_ignore|proxy_arp)"
    r"|ipv6\.conf\.(all|default)\.forwarding"
    r"|netfilter\.nf_log_all_netns"
    r"|netfilter\.nf_conntrack_tcp_loose"
    r"|netfilter\.nf_conntrack_(count|max)"
    r"|netfilter\.nf_log\.(2|10))$"
)
"""The sysctls that decide a packet's path: whether bridged frames reach iptables
(``bridge-nf-call-*``; absent means br_netfilter is not loaded), routing and reverse-path
filtering, which ARP requests are answered (``arp_ignore``), and whether TRACE can log from a
namespace."""


class Spec(NamedTuple):
    """One command to run: ``kind`` is the stable name readers know it by."""

    kind: str
    argv: Tuple[str, ...]
    file: str
    bridge: Optional[str] = None
    max_lines: Optional[int] = None
    """Stop reading after this many lines (``conntrack -L`` on a busy node is huge)."""
    fallback: Optional[Tuple[str, ...]] = None
    """Tried when ``argv`` fails (``dump-flows`` of a bridge that refuses OpenFlow 1.0)."""


class Options(NamedTuple):
    """What to collect and from where."""

    netns: Optional[str] = None
    """Collect inside this network namespace instead of the current one (a lab node)."""
    ovs_rundir: Optional[str] = None
    """A private Open vSwitch run folder (``OVS_RUNDIR``: ``db.sock``, ``ovs-vswitchd.ctl``,
    ``BRIDGE.mgmt``) instead of the system's."""
    namespaces: Optional[Tuple[str, ...]] = None
    """Which other namespaces to collect: ``None`` means every one ``ip netns list`` shows
    (when collecting the current namespace) or none (when ``netns`` is given)."""
    max_namespaces: int = 256
    conntrack_max: int = 0
    """Collect at most this many conntrack entries per namespace and family (0: skip)."""
    timeout: float = DEFAULT_TIMEOUT


class Collection:
    """A collection in progress: where it writes, and what has been recorded so far.

    Each record is the manifest entry of one command: ``kind``, ``argv``, ``file``, ``netns``,
    ``bridge``, ``status`` (``ok``, ``failed`` = non-zero exit, ``missing`` = tool not installed,
    ``timeout``, ``error`` = could not be started), ``exit``, ``started``, ``seconds``,
    ``stderr``, ``truncated``.
    """

    def __init__(self, root: Path, options: Options) -> None:
        self.root = root
        self.options = options
        self.records: List[Dict[str, Any]] = []
        self.tools: Dict[str, Dict[str, Any]] = {}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str) -> str:
    """A file-name-safe form of a bridge or namespace name (they come from the node)."""
    cleaned = _SAFE.sub(lambda m: f"%{ord(m.group()):02x}", name)
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "%2e") or "%00"
    return cleaned


def _ovs_env(options: Options) -> Dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    if options.ovs_rundir:
        for var in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"):
            env[var] = options.ovs_rundir
    return env


def _vsctl(options: Options, *args: str) -> Tuple[str, ...]:
    db = (f"--db=unix:{options.ovs_rundir}/db.sock",) if options.ovs_rundir else ()
    return ("ovs-vsctl", *db, "--timeout=5", *args)


def _appctl(options: Options, *args: str) -> Tuple[str, ...]:
    target = ("-t", f"{options.ovs_rundir}/ovs-vswitchd.ctl") if options.ovs_rundir else ()
    return ("ovs-appctl", "--timeout=5", *target, *args)


def linux_specs(options: Options) -> List[Spec]:
    """Commands run in every namespace: netfilter, ipsets, links, routes, bridges, sysctls."""
    specs = [
        # -c: each rule's packet counter, which `nodetrace diff` compares between two
        # snapshots (the rules read the same with or without it).
        Spec("iptables-save", ("iptables-save", "-c"), "iptables-save.txt"),
        Spec("ip6tables-save", ("ip6tables-save", "-c"), "ip6tables-save.txt"),
        # Both backends can hold rules at once and the kernel applies both; the plain
        # command shows only the one the alternatives system picked.
        Spec("iptables-legacy-save", ("iptables-legacy-save", "-c"), "iptables-legacy-save.txt"),
        Spec("iptables-nft-save", ("iptables-nft-save", "-c"), "iptables-nft-save.txt"),
        Spec("ip6tables-legacy-save", ("ip6tables-legacy-save", "-c"), "ip6tables-legacy-save.txt"),
        Spec("ip6tables-nft-save", ("ip6tables-nft-save", "-c"), "ip6tables-nft-save.txt"),
        Spec("ipset-save", ("ipset", "save"), "ipset-save.txt"),
        # nf_tables traces name rules by handle, which only this listing shows (a rule added
        # with iptables-nft -I does not get the handle a fresh restore would give it).
        Spec("nft-list-ruleset", ("nft", "-a", "list", "ruleset"), "nft-list-ruleset.txt"),
        # Namespace ids, to find which namespace holds the far end of a veth (link_netnsid).
        Spec("ip-netns", ("ip", "-j", "netns", "list"), "ip-netns.json"),
        Spec("ip-link", ("ip", "-d", "-j", "link", "show"), "ip-link.json"),
        Spec("ip-addr", ("ip", "-d", "-j", "addr", "show"), "ip-addr.json"),
        Spec("ip-route", ("ip", "-d", "-j", "route", "show", "table", "all"), "ip-route.json"),
        Spec(
            "ip6-route",
            ("ip", "-6", "-d", "-j", "route", "show", "table", "all"),
            "ip6-route.json",
        ),
        Spec("ip-rule", ("ip", "-d", "-j", "rule", "show"), "ip-rule.json"),
        Spec("ip6-rule", ("ip", "-6", "-d", "-j", "rule", "show"), "ip6-rule.json"),
        Spec("ip-neigh", ("ip", "-d", "-j", "neigh", "show"), "ip-neigh.json"),
        Spec("bridge-link", ("bridge", "-d", "-j", "link", "show"), "bridge-link.json"),
        Spec("bridge-fdb", ("bridge", "-d", "-j", "fdb", "show"), "bridge-fdb.json"),
        Spec("bridge-vlan", ("bridge", "-d", "-j", "vlan", "show"), "bridge-vlan.json"),
        Spec("sysctl", ("sysctl", "-e", "-a", "-r", SYSCTL_PATTERN), "sysctl.txt"),
        # Counters only (`nodetrace diff`): devices' rx/tx/dropped, the kernel's SNMP
        # counters (-a absolute, -s: nstat must not write its history file, -z: zeros too)
        # and the connection tracker's statistics.
        Spec("ip-link-stats", ("ip", "-s", "-s", "-j", "link", "show"), "ip-link-stats.json"),
        Spec("nstat", ("nstat", "-asz"), "nstat.txt"),
        Spec("conntrack-stats", ("conntrack", "-S"), "conntrack-stats.txt"),
    ]
    if options.conntrack_max > 0:
        for family in ("ipv4", "ipv6"):
            specs.append(
                Spec(
                    f"conntrack-{family}",
                    ("conntrack", "-L", "-f", family),
                    f"conntrack-{family}.txt",
                    max_lines=options.conntrack_max,
                )
            )
    return specs


def ovs_specs(options: Options) -> List[Spec]:
    """Commands about Open vSwitch as a whole (its database); per-bridge ones follow later."""
    specs = [
        Spec("ovs-vsctl-show", _vsctl(options, "show"), "ovs-vsctl-show.txt"),
        Spec(
            "ovs-appctl-dpctl-show-stats",
            _appctl(options, "dpctl/show", "-s"),
            "ovs-appctl-dpctl-show-stats.txt",
        ),
    ]
    for table in ("Open_vSwitch", "Bridge", "Port", "Interface"):
        specs.append(
            Spec(
                f"ovs-vsctl-list-{table.lower()}",
                _vsctl(options, "--format=json", "--data=json", "list", table),
                f"ovs-vsctl-list-{table.lower()}.json",
            )
        )
    if options.conntrack_max > 0:
        # The userspace datapath keeps its own connection table; ct() flows read it.
        specs.append(
            Spec(
                "ovs-appctl-dpctl-dump-conntrack",
                _appctl(options, "dpctl/dump-conntrack"),
                "ovs-appctl-dpctl-dump-conntrack.txt",
                max_lines=options.conntrack_max,
            )
        )
    return specs


def bridge_specs(options: Options, bridge: str) -> List[Spec]:
    """Per-bridge OpenFlow state: port numbers, flows and the MAC learning table."""
    b = safe_name(bridge)
    return [
        Spec("ovs-ofctl-show", ("ovs-ofctl", "show", bridge), f"ovs-ofctl-show.{b}.txt", bridge),
        Spec(
            "ovs-ofctl-dump-flows",
            ("ovs-ofctl", "dump-flows", bridge),
            f"ovs-ofctl-dump-flows.{b}.txt",
            bridge,
            fallback=("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge),
        ),
        Spec(
            "ovs-appctl-fdb-show",
            _appctl(options, "fdb/show", bridge),
            f"ovs-appctl-fdb-show.{b}.txt",
            bridge,
        ),
    ]


TOOL_VERSIONS: Dict[str, Tuple[str, ...]] = {
    "iptables": ("iptables", "-V"),
    "ip6tables": ("ip6tables", "-V"),
    "ip": ("ip", "-V"),
    "bridge": ("bridge", "-V"),
    "ipset": ("ipset", "--version"),
    "ovs-vsctl": ("ovs-vsctl", "--version"),
    "ovs-ofctl": ("ovs-ofctl", "--version"),
    "conntrack": ("conntrack", "--version"),
    "sysctl": ("sysctl", "--version"),
}


def _in_netns(netns: Optional[str], argv: Tuple[str, ...]) -> List[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _run(
    argv: List[str],
    out_path: Path,
    *,
    env: Dict[str, str],
    timeout: float,
    max_lines: Optional[int],
) -> Tuple[str, Optional[int], str, bool]:
    """Run ``argv`` with its output going straight to ``out_path``.

    Returns (status, exit code, error output, truncated). Output goes to a file rather than
    memory so a huge flow table or ruleset cannot exhaust the collector.
    """
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        return "missing", None, f"{argv[0]}: not installed", False
    truncated = False
    with open(out_path, "wb") as out, tempfile.TemporaryFile() as err:
        try:
            if max_lines is None:
                proc = subprocess.run(
                    argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                    timeout=timeout, check=False,
                )  # fmt: skip
                code: Optional[int] = proc.returncode
            else:
                code, truncated = _run_bounded(argv, out, err, env, timeout, max_lines)
        except subprocess.TimeoutExpired:
            err.seek(0)
            return "timeout", None, _decode(err.read()) + f"\ntimed out after {timeout:g}s", False
        except OSError as exc:
            return "error", None, f"{argv[0]}: {exc}", False
        err.seek(0)
        stderr = _decode(err.read())
    if code is None or code == 0 or truncated:
        return "ok", code, stderr, truncated
    return "failed", code, stderr, truncated


def _run_bounded(
    argv: List[str],
    out: IO[bytes],
    err: IO[bytes],
    env: Dict[str, str],
    timeout: float,
    max_lines: int,
) -> Tuple[Optional[int], bool]:
    """Copy at most ``max_lines`` lines of output, then stop the command (it only reads)."""
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None
    lines = 0
    truncated = False
    try:
        for line in proc.stdout:
            out.write(line)
            lines += 1
            if lines >= max_lines:
                truncated = True
                break
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(argv, timeout)
    finally:
        if proc.poll() is None and (truncated or time.monotonic() > deadline):
            proc.kill()
        proc.stdout.close()
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return (None if truncated else code), truncated


def _decode(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= STDERR_KEEP else text[:STDERR_KEEP] + "\n[...]"


def run_spec(col: Collection, spec: Spec, scope_dir: str, netns: Optional[str]) -> Dict[str, Any]:
    """Run one command (in ``netns`` if given), store its output, and record what happened."""
    rel = f"{scope_dir}/{spec.file}"
    path = col.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    env = _ovs_env(col.options)
    argv = _in_netns(netns, spec.argv)
    started, t0 = _now(), time.monotonic()
    status, code, stderr, truncated = _run(
        argv, path, env=env, timeout=col.options.timeout, max_lines=spec.max_lines
    )
    if status == "failed" and spec.fallback is not None:
        argv = _in_netns(netns, spec.fallback)
        status, code, stderr2, truncated = _run(
            argv, path, env=env, timeout=col.options.timeout, max_lines=spec.max_lines
        )
        stderr = f"{stderr}\nretried as {' '.join(argv)}\n{stderr2}".strip()
    rec: Dict[str, Any] = {
        "kind": spec.kind,
        "argv": argv,
        "file": rel,
        "netns": netns if netns != col.options.netns else None,
        "bridge": spec.bridge,
        "status": status,
        "exit": code,
        "started": started,
        "seconds": round(time.monotonic() - t0, 4),
        "stderr": stderr.strip(),
        "truncated": truncated,
    }
    if status in ("missing", "error") and path.exists() and path.stat().st_size == 0:
        path.unlink()
    col.records.append(rec)
    return rec


def _read(col: Collection, rec: Dict[str, Any]) -> str:
    try:
        return (col.root / str(rec["file"])).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def ovs_bridges(text: str) -> List[str]:
    """Bridge names from ``ovs-vsctl --format=json list Bridge`` output (empty on bad input)."""
    try:
        doc = json.loads(text)
        heading = doc["headings"]
        col = heading.index("name")
        return [row[col] for row in doc["data"] if isinstance(row[col], str)]
    except (ValueError, KeyError, TypeError, IndexError):
        return []


def _capture(
    argv: List[str], env: Dict[str, str], timeout: float
) -> "subprocess.CompletedProcess[str]":
    """Run a short command for its text output and error output."""
    return subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=timeout, env=env, check=False,
    )  # fmt: skip


def list_namespaces(col: Collection) -> Tuple[List[str], str]:
    """Names from ``ip -j netns list`` (run where the collection runs) and any problem."""
    argv = _in_netns(col.options.netns, ("ip", "-j", "netns", "list"))
    try:
        proc = _capture(argv, _ovs_env(col.options), col.options.timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"ip netns list: {exc}"
    if proc.returncode != 0:
        return [], f"ip netns list: exit {proc.returncode}: {proc.stderr.strip()}"
    try:
        names = [d["name"] for d in json.loads(proc.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return [], "ip netns list: unreadable output"
    return [n for n in names if isinstance(n, str)], ""


def tool_versions(col: Collection) -> None:
    env = _ovs_env(col.options)
    for tool, argv in TOOL_VERSIONS.items():
        full = _in_netns(col.options.netns, argv)
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            col.tools[tool] = {"argv": full, "status": "missing", "version": None}
            continue
        try:
            proc = _capture(full, env, min(10.0, col.options.timeout))
            text = (proc.stdout or proc.stderr).strip().splitlines()
            col.tools[tool] = {
                "argv": full,
                "status": "ok" if proc.returncode == 0 else "failed",
                "version": text[0] if text else "",
            }
        except (OSError, subprocess.TimeoutExpired) as exc:
            col.tools[tool] = {"argv": full, "status": "error", "version": str(exc)}


def iptables_backend(version_line: object) -> str:
    """``nft``/``legacy`` from ``iptables -V`` (``iptables v1.8.9 (nf_tables)``)."""
    if not isinstance(version_line, str):
        return "unknown"
    if "nf_tables" in version_line:
        return "nft"
    if "legacy" in version_line:
        return "legacy"
    # iptables before 1.8 had only the legacy backend and did not say so.
    m = re.search(r"v(\d+)\.(\d+)", version_line)
    if m and (int(m.group(1)), int(m.group(2))) < (1, 8):
        return "legacy"
    return "unknown"


def collect_into(root: Path, options: Options, *, log: Optional[Log] = None) -> Path:
    """Collect everything into the empty folder ``root`` and write its manifest."""
    col = Collection(root=root, options=options)
    started = _now()
    say: Log = log or (lambda msg: None)
    tool_versions(col)
    say("linux state")
    for spec in linux_specs(options):
        run_spec(col, spec, "host", options.netns)
    say("open vswitch")
    bridges: List[str] = []
    for spec in ovs_specs(options):
        rec = run_spec(col, spec, "host", options.netns)
        if spec.kind == "ovs-vsctl-list-bridge" and rec["status"] == "ok":
            bridges = ovs_bridges(_read(col, rec))
    for bridge in bridges:
        for spec in bridge_specs(options, bridge):
            run_spec(col, spec, "host", options.netns)
    namespaces, ns_problem = _selected_namespaces(col)
    skipped: List[str] = []
    if len(namespaces) > options.max_namespaces:
        skipped = namespaces[options.max_namespaces :]
        namespaces = namespaces[: options.max_namespaces]
    for ns in namespaces:
        say(f"namespace {ns}")
        for spec in linux_specs(options):
            # A namespace inside the target namespace is not a thing: `ip netns` names are
            # global, so per-namespace commands always run from the collector's own view.
            run_spec(col, spec, f"netns/{safe_name(ns)}", ns)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "started": started,
        "finished": _now(),
        "collector": {
            "python": platform.python_version(),
            "argv": sys.argv,
            "netns": options.netns,
            "ovs_rundir": options.ovs_rundir,
            "conntrack_max": options.conntrack_max,
            "timeout": options.timeout,
        },
        "tools": col.tools,
        "iptables_backend": iptables_backend(col.tools.get("iptables", {}).get("version")),
        "namespaces": namespaces,
        "namespaces_skipped": skipped,
        "namespaces_problem": ns_problem,
        "commands": col.records,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return root


def _selected_namespaces(col: Collection) -> Tuple[List[str], str]:
    wanted = col.options.namespaces
    if wanted is not None:
        return list(wanted), ""
    if col.options.netns is not None:
        return [], ""
    return list_namespaces(col)


def is_archive_path(path: str) -> bool:
    return path.endswith((".tar.gz", ".tgz"))


def default_output() -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"nodetrace-snapshot-{safe_name(socket.gethostname())}-{stamp}.tar.gz"


def collect(output: str, options: Options, *, log: Optional[Log] = None) -> Path:
    """Collect into ``output``: a new folder, or a ``.tar.gz``/``.tgz`` archive.

    An existing non-empty folder or an existing archive is never overwritten.
    """
    out = Path(output)
    if is_archive_path(output):
        if out.exists():
            raise FileExistsError(f"{output}: exists already")
        with tempfile.TemporaryDirectory(prefix="nodetrace-collect-") as tmp:
            root = Path(tmp) / "snapshot"
            root.mkdir()
            collect_into(root, options, log=log)
            partial = out.with_name(out.name + ".partial")
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(root, arcname=re.sub(r"\.(tar\.gz|tgz)$", "", out.name))
            partial.replace(out)
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{output}: exists already and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return collect_into(out, options, log=log)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The collector's options, shared by ``collect.py`` and ``nodetrace collect``."""
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="folder, or archive ending in .tar.gz/.tgz (default: "
        "nodetrace-snapshot-HOST-TIME.tar.gz)",
    )
    parser.add_argument(
        "--netns", metavar="NS", help="collect inside this network namespace (a lab node)"
    )
    parser.add_argument(
        "--ovs-rundir",
        metavar="DIR",
        help="Open vSwitch run folder holding db.sock, ovs-vswitchd.ctl and BRIDGE.mgmt "
        "(default: the system's)",
    )
    parser.add_argument(
        "--namespaces",
        metavar="LIST",
        help="comma-separated namespaces to collect besides the main one; 'none' for none "
        "(default: all that `ip netns list` shows, or none with --netns)",
    )
    parser.add_argument(
        "--max-namespaces",
        type=int,
        default=256,
        metavar="N",
        help="collect at most N namespaces (default 256)",
    )
    parser.add_argument(
        "--conntrack",
        type=int,
        default=0,
        metavar="N",
        help="also save up to N conntrack entries per namespace and family (default: skip)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"per-command time limit (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")


NETNS_DIR = "/run/netns"
"""Where ``ip netns`` keeps the named namespaces that ``ip netns exec`` enters."""


def option_problem(options: Options) -> Optional[str]:
    """What is wrong with ``options`` as a user gave them, or ``None``.

    A namespace or run folder that does not exist would make every command fail one by one
    and still yield an empty snapshot; it is a typo, so it is said at once instead.
    """
    if options.timeout <= 0:
        return "--timeout must be positive"
    if options.max_namespaces < 0:
        return "--max-namespaces must be 0 or more"
    if options.conntrack_max < 0:
        return "--conntrack must be 0 or more"
    if options.ovs_rundir is not None and not os.path.isdir(options.ovs_rundir):
        return f"--ovs-rundir {options.ovs_rundir}: no such folder"
    for name in ([options.netns] if options.netns else []) + list(options.namespaces or ()):
        if "/" in name or not os.path.exists(os.path.join(NETNS_DIR, name)):
            return f"{name}: no such network namespace (ip netns list shows the names)"
    return None


def options_from(args: argparse.Namespace) -> Options:
    namespaces: Optional[Tuple[str, ...]] = None
    if args.namespaces is not None:
        names = [n.strip() for n in args.namespaces.split(",") if n.strip()]
        namespaces = () if names == ["none"] else tuple(names)
    return Options(
        netns=args.netns,
        ovs_rundir=args.ovs_rundir,
        namespaces=namespaces,
        max_namespaces=args.max_namespaces,
        conntrack_max=args.conntrack,
        timeout=args.timeout,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="collect.py",
        description="Capture this node's network state (read-only) into a nodetrace snapshot.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    options = options_from(args)
    problem = option_problem(options)
    if problem is not None:
        print(f"collect: error: {problem}", file=sys.stderr)
        return 2
    output = args.output or default_output()

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"collect: {msg}", file=sys.stderr)

    try:
        path = collect(output, options, log=log)
    except (OSError, FileExistsError) as exc:
        print(f"collect: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
