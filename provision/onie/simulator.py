"""`provision onie-sim`: play an ONIE switch's discovery against a boot server, step by step.

Follows docs/onie.md's "Discovery" sections (and ONIE's bin/discover + bin/exec_installer, install mode):
1. DHCPv4 with ONIE's options: 60 `onie_vendor:<platform>`, 77, 61 (0x00 + serial), 125
   (enterprise 42623: 3 machine, 4 arch, 5 revision), 55 as ONIE asks.
2. Exact URLs: option 125 sub-option 1, then option 114.
3. Inexact HTTP: option 72, siaddr, option 54, option 150 (66 when it is an address), each probed
   with a TCP connect to port 80, then every default name GET; then option 67 as a URL.
4. TFTP: option 67 / the BOOTP `file` on siaddr, 66 and 150.
5. The TFTP waterfall on siaddr, 66, 150: MAC directory, hex-IP prefixes, then the default names;
   a server that times out is left for the next one, as ONIE does.
Every HTTP request carries ONIE's headers and User-Agent. A file that downloads and that ONIE
would run (no ONIE-UPDATER-COOKIE in its first 100 lines) is then played as provision's installer
(provision.onie.simulator_installer: its checks, stages and progress reports to the server).
As ONIE does after an installer fails, discovery goes on down the list (the next URL, name or
path); when the list is done, a new cycle starts with DHCP (up to `cycles`). It ends at the first
installer that succeeds (ONIE reboots) or hangs. Every run is counted (`installer_runs`), so a
server that hands the same failing installer to every name shows as cycles x names runs.
Not simulated: the `onie-server` DNS name, local partitions, IPv6 link-local neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dhcp4 import codec
from dhcp4.options import (
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    MessageType,
)
from onie import discovery as disco
from onie.identity import OnieIdentity
from onie.installer import UPDATER_COOKIE, NotAnInstaller, inspect
from provision.onie import simulator_net as net
from provision.onie.simulator_installer import Behaviour, InstallerRun, RunOutcome, run_installer
from provision.onie.simulator_net import Fetch, Outcome

HTTP_PORT = 80
DHCP_TIMEOUT_S = 2.0  # udhcpc -T 2
DHCP_TRIES = 3  # udhcpc -t 2, plus one for a busy server under --count
ONIE_CYCLE_WAIT_S = 20.0  # ONIE's pause between discovery cycles (docs/onie.md "The installer contract")


class Step(enum.Enum):
    """The discovery method an attempt belongs to, in ONIE's order."""

    EXACT_VIVSO = "exact: option 125.1"
    EXACT_114 = "exact: option 114"
    HTTP_INEXACT = "inexact HTTP"
    BOOTFILE_URL = "option 67 as URL"
    TFTP_BOOTFILE = "TFTP bootfile"
    TFTP_WATERFALL = "TFTP waterfall"


@dataclass(frozen=True)
class Attempt:
    step: Step
    url: str
    outcome: Outcome
    detail: str = ""
    size: int = 0
    cycle: int = 1
    run: InstallerRun | None = None  # when ONIE ran what it fetched

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "url": self.url,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "bytes": self.size,
            "cycle": self.cycle,
            "run": self.run.as_dict() if self.run else None,
        }


@dataclass(frozen=True)
class Lease:
    ip: str
    prefix: int
    server_id: str | None
    siaddr: str | None
    options: dict[int, bytes]
    boot_file: str | None  # the BOOTP `file` field

    @classmethod
    def from_ack(cls, ack: codec.Packet) -> Lease:
        siaddr = ack.siaddr if ack.siaddr != codec.ZERO_IP else None
        return cls(
            ip=ack.yiaddr,
            prefix=net.ip_prefix(ack.options.get(OPT_SUBNET_MASK)),
            server_id=ack.ip_option(OPT_SERVER_ID),
            siaddr=siaddr,
            options=dict(ack.options),
            boot_file=ack.file.decode("latin-1") or None,
        )

    def text(self, code: int) -> str | None:
        raw = self.options.get(code)
        return raw.decode("utf-8", "replace").rstrip("\0") or None if raw else None

    @property
    def onie_url(self) -> str | None:
        raw = self.options.get(disco.OPT_VIVSO)
        return disco.urls_from_vivso(raw).get(disco.SubOption.INSTALLER_URL) if raw else None

    @property
    def default_url(self) -> str | None:
        return self.text(disco.OPT_DEFAULT_URL)

    @property
    def bootfile(self) -> str | None:
        return self.text(disco.OPT_BOOTFILE)

    @property
    def www_servers(self) -> list[str]:
        return disco.addresses(self.options.get(disco.OPT_WWW_SERVER, b""))

    @property
    def tftp_name(self) -> str | None:
        return self.text(disco.OPT_TFTP_SERVER)

    @property
    def tftp_ips(self) -> list[str]:
        return disco.addresses(self.options.get(disco.OPT_TFTP_SERVER_ADDRESS, b""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "prefix": self.prefix,
            "server_id": self.server_id,
            "siaddr": self.siaddr,
            "onie_url": self.onie_url,
            "default_url": self.default_url,
            "www_servers": self.www_servers,
            "tftp_server": self.tftp_name,
            "tftp_server_ips": self.tftp_ips,
            "bootfile": self.bootfile,
            "boot_file": self.boot_file,
        }


@dataclass(frozen=True)
class Found:
    url: str
    step: Step
    size: int
    sha256: str
    verify: dict[str, Any] | None = None
    saved: Path | None = None
    run: InstallerRun | None = None


@dataclass
class SimResult:
    identity: OnieIdentity
    lease: Lease | None = None
    attempts: list[Attempt] = field(default_factory=list)
    found: Found | None = None  # the installer that ended discovery: it succeeded, or it hangs
    error: str | None = None
    cycles: int = 0  # discovery cycles begun

    @property
    def runs(self) -> list[Attempt]:
        """The attempts where ONIE ran what it fetched."""
        return [a for a in self.attempts if a.run is not None]

    @property
    def installed(self) -> bool:
        return self.found is not None and self.found.run is not None and self.found.run.exit_code == 0

    @property
    def outcome(self) -> str:
        """installed | hung | failed (installers ran, none succeeded) | not-found (none ran)."""
        if self.found is not None and self.found.run is not None:
            return self.found.run.outcome.value
        if self.found is not None:
            return RunOutcome.INSTALLED.value
        return "failed" if self.runs else "not-found"

    def as_dict(self) -> dict[str, Any]:
        i = self.identity
        per_cycle = [sum(1 for a in self.runs if a.cycle == n) for n in range(1, self.cycles + 1)]
        return {
            "mac": i.mac,
            "serial": i.serial,
            "platform": i.platform,
            "onie_version": i.onie_version,
            "lease": self.lease.as_dict() if self.lease else None,
            "attempts": [a.as_dict() for a in self.attempts],
            "installer": None
            if self.found is None
            else {
                "url": self.found.url,
                "step": self.found.step.value,
                "bytes": self.found.size,
                "sha256": self.found.sha256,
                "verify": self.found.verify,
                "saved": str(self.found.saved) if self.found.saved else None,
                "run": self.found.run.as_dict() if self.found.run else None,
            },
            "outcome": self.outcome,
            "cycles": self.cycles,
            "installer_runs": len(self.runs),
            "installer_runs_per_cycle": per_cycle,
            "reports": [r.as_dict() for a in self.runs if a.run for r in a.run.reports],
            "error": self.error,
        }


@dataclass(frozen=True)
class SimOptions:
    interface: str
    verify: bool = False
    configure: bool = True  # put the leased address on the interface (needed for TFTP/HTTP source)
    save_dir: Path | None = None
    tftp_port: int = net.TFTP_PORT
    tftp_blksize: int | None = None
    dhcp_timeout: float = DHCP_TIMEOUT_S
    dhcp_tries: int = DHCP_TRIES
    installer: Behaviour = field(default_factory=Behaviour)  # how the installers it runs behave
    cycles: int = 1  # discovery cycles at most (ONIE: forever)
    cycle_wait: float = 0.0  # pause between cycles (ONIE: ONIE_CYCLE_WAIT_S)


def switches(
    platforms: Sequence[str],
    count: int,
    mac: str | None,
    serial: str | None,
    onie_version: str,
    switch_asic: str | None = None,
) -> list[OnieIdentity]:
    """`count` switches: MACs counting up from `mac` (default 02:4f:4e:..., locally administered),
    serials `<serial>` (one switch) or `<serial>-<n>`, platforms taken in turn."""
    start = disco.normalise_mac(mac) if mac else "02:4f:4e:00:00:00"
    if start is None:  # the CLI checks --mac first (onie_sim_cmds._check_mac)
        raise ValueError(f"{mac!r} is not a MAC address")
    base = int(start.replace(":", ""), 16)
    if not mac:
        base += random.randrange(0, 0xFFFF) << 8
    out = []
    for n in range(count):
        m = f"{base + n:012x}"
        text_mac = ":".join(m[i : i + 2] for i in range(0, 12, 2))
        sn = serial or f"SIM{m[-6:].upper()}"
        if serial and count > 1:
            sn = f"{serial}-{n + 1}"
        out.append(
            disco.complete(
                OnieIdentity(
                    platform=platforms[n % len(platforms)],
                    mac=text_mac,
                    serial=sn,
                    onie_version=onie_version,
                    switch_asic=switch_asic,
                    operation=disco.Operation.INSTALL.value,
                )
            )
        )
    return out


class Simulator:
    def __init__(self, options: SimOptions, say: Callable[[str], None] | None = None):
        self.opt = options
        self.say = say or (lambda _m: None)
        self.endpoint: net.DhcpEndpoint | None = None
        self._added: list[str] = []
        self._workdir = Path(tempfile.mkdtemp(prefix="onie-sim-"))

    async def __aenter__(self) -> Simulator:
        self.endpoint = await net.open_dhcp(self.opt.interface)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.endpoint and self.endpoint.transport:
            self.endpoint.transport.close()
        for cidr in self._added:
            await _ip("addr", "del", cidr, "dev", self.opt.interface)
        shutil.rmtree(self._workdir, ignore_errors=True)

    async def run_many(
        self, idents: Sequence[OnieIdentity], on_done: Callable[[SimResult], None] | None = None
    ) -> list[SimResult]:
        async def one(identity: OnieIdentity) -> SimResult:
            result = await self.run(identity)
            if on_done is not None:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(i) for i in idents)))

    async def run(self, identity: OnieIdentity) -> SimResult:
        """Discovery cycles as ONIE's `discover` loops them: DHCP, then every source in order;
        the next cycle after a pause, until an installer succeeds or hangs, or `cycles` ran."""
        result = SimResult(identity)
        for cycle in range(1, max(1, self.opt.cycles) + 1):
            if cycle > 1 and self.opt.cycle_wait > 0:
                await asyncio.sleep(self.opt.cycle_wait)
            result.cycles = cycle
            try:
                lease = await self.dhcp(identity)
            except OSError as exc:
                result.error = f"DHCP: {exc}"
                return result  # the interface itself failed: no later cycle would do better
            if lease is None:
                result.error = "DHCP: no lease (no OFFER/ACK)"
                continue
            result.lease, result.error = lease, None
            if self.opt.configure:
                await self._configure(lease)
            await self.discover(identity, result, cycle)
            if result.found is not None:
                break
        return result

    # -- DHCP -----------------------------------------------------------------------------------

    async def dhcp(self, identity: OnieIdentity) -> Lease | None:
        assert self.endpoint is not None and identity.mac
        onie_opts = disco.request_options(identity)
        for _ in range(2):  # a NAK starts over once
            xid = random.getrandbits(32)
            discover = net.request_packet(
                xid, identity.mac, {OPT_MESSAGE_TYPE: bytes((MessageType.DISCOVER,)), **onie_opts}
            )
            offer = await net.exchange(
                self.endpoint, discover, {MessageType.OFFER}, self.opt.dhcp_timeout, self.opt.dhcp_tries
            )
            if offer is None:
                return None
            server = offer.ip_option(OPT_SERVER_ID)
            req_opts = {
                OPT_MESSAGE_TYPE: bytes((MessageType.REQUEST,)),
                OPT_REQUESTED_IP: codec.ip_bytes(offer.yiaddr),
            }
            if server:
                req_opts[OPT_SERVER_ID] = codec.ip_bytes(server)
            request = net.request_packet(xid, identity.mac, {**req_opts, **onie_opts})
            ack = await net.exchange(
                self.endpoint,
                request,
                {MessageType.ACK, MessageType.NAK},
                self.opt.dhcp_timeout,
                self.opt.dhcp_tries,
            )
            if ack is None:
                return None
            if ack.message_type is MessageType.ACK:
                return Lease.from_ack(ack)
        return None

    async def _configure(self, lease: Lease) -> None:
        cidr = f"{lease.ip}/{lease.prefix}"
        if await _ip("addr", "add", cidr, "dev", self.opt.interface):
            self._added.append(cidr)
            # a fresh address is "tentative" only for IPv6; IPv4 is usable at once

    # -- discovery --------------------------------------------------------------------------------

    async def discover(self, identity: OnieIdentity, result: SimResult, cycle: int = 1) -> None:
        lease = result.lease
        assert lease is not None
        workdir = Path(tempfile.mkdtemp(dir=self._workdir))
        local_ip = lease.ip if self.opt.configure else None
        headers = disco.request_headers(identity)
        async with net.http_session(local_ip) as session:
            ctx = _Run(self, identity, result, session, headers, local_ip, workdir, cycle)
            await ctx.go()
            shutil.rmtree(workdir, ignore_errors=True)

    def _verify(self, identity: OnieIdentity, path: Path) -> tuple[bool, dict[str, Any]]:
        try:
            info = inspect(path)
        except (NotAnInstaller, OSError) as exc:
            return False, {"ok": False, "problems": [str(exc)]}
        problems = list(info.problems)
        platform_ok = info.platform is None or info.platform == identity.platform
        if not platform_ok:
            problems.append(f"built for {info.platform}, this switch is {identity.platform}")
        ok = info.checksum_ok and platform_ok
        return ok, {
            "ok": ok,
            "format": info.format.value,
            "checksum": info.checksum_kind,
            "checksum_ok": info.checksum_ok,
            "platform": info.platform,
            "nos": info.nos_name,
            "version": info.nos_version,
            "problems": problems,
        }


class _Run:
    """One discovery cycle of one switch through ONIE's URL sources; stops at the first installer
    that succeeds or hangs, and goes on after one that fails (exec_installer)."""

    def __init__(self, sim: Simulator, identity, result, session, headers, local_ip, workdir, cycle=1):
        self.sim = sim
        self.identity: OnieIdentity = identity
        self.result: SimResult = result
        self.lease: Lease = result.lease
        self.session = session
        self.headers: dict[str, str] = headers
        self.local_ip: str | None = local_ip
        self.workdir: Path = workdir
        self.cycle: int = cycle
        self.n = 0

    async def go(self) -> None:
        lease = self.lease
        for step, url in ((Step.EXACT_VIVSO, lease.onie_url), (Step.EXACT_114, lease.default_url)):
            if url and await self.url_run(step, url):
                return
        if await self.http_inexact():
            return
        if await self.tftp_bootfile():
            return
        await self.waterfall()

    async def http_inexact(self) -> bool:
        lease = self.lease
        servers: list[str] = [*lease.www_servers]
        servers += [s for s in (lease.siaddr, lease.server_id) if s]
        servers += lease.tftp_ips
        if lease.tftp_name and _is_ip(lease.tftp_name):
            servers.append(lease.tftp_name)
        for server in dict.fromkeys(servers):
            if not await net.probe_port(server, HTTP_PORT, self.local_ip):
                self.record(Step.HTTP_INEXACT, f"http://{server}/", Fetch(Outcome.REFUSED, "port 80 closed"))
                continue
            for entry in disco.default_names(self.identity):
                if await self.url_run(Step.HTTP_INEXACT, f"http://{server}/{entry.name}"):
                    return True
        bootfile = lease.bootfile
        return bool(bootfile and "://" in bootfile and await self.url_run(Step.BOOTFILE_URL, bootfile))

    async def tftp_bootfile(self) -> bool:
        lease = self.lease
        for f in dict.fromkeys(x for x in (lease.bootfile, lease.boot_file) if x):
            if "://" in f:
                continue
            for server in (lease.siaddr, lease.tftp_name, *lease.tftp_ips):
                if server and await self.url_run(Step.TFTP_BOOTFILE, f"tftp://{server}/{f}"):
                    return True
        return False

    async def waterfall(self) -> bool:
        lease = self.lease
        mac = (self.identity.mac or "").upper()
        entries = disco.tftp_waterfall(replace(self.identity, mac=mac), lease.ip)
        for server in dict.fromkeys(s for s in (lease.siaddr, lease.tftp_name, *lease.tftp_ips) if s):
            for entry in entries:
                if await self.url_run(Step.TFTP_WATERFALL, f"tftp://{server}/{entry.path}"):
                    return True
                if self.result.attempts[-1].outcome is Outcome.TIMEOUT:
                    break  # exec_installer: "Stop TFTP waterfall on a timeout"
        return False

    def record(self, step: Step, url: str, fetch: Fetch, run: InstallerRun | None = None) -> Attempt:
        attempt = Attempt(step, url, fetch.outcome, fetch.detail, fetch.size, self.cycle, run)
        self.result.attempts.append(attempt)
        self.sim.say(f"{self.identity.mac} {step.value}: {url} -> {fetch.outcome.value} {fetch.detail}")
        if run is not None:
            for rep in run.reports:
                answer = f"HTTP {rep.http_status}" if rep.http_status is not None else rep.error
                self.sim.say(f"{self.identity.mac}   report {rep.stage} {rep.status} -> {answer}")
        return attempt

    async def url_run(self, step: Step, url: str) -> bool:
        """exec_installer `url_run`: fetch, run; True when discovery ends here (the installer
        succeeded, so ONIE reboots, or it hangs), False to go on down the list."""
        self.n += 1
        dest = self.workdir / f"try-{self.n}"
        scheme, _, rest = url.partition("://")
        if scheme == "http":
            fetch = await net.http_get(self.session, url, self.headers, dest)
        elif scheme == "tftp":
            server, _, path = rest.partition("/")
            fetch = await net.tftp_get(
                server, path, dest, self.local_ip, self.sim.opt.tftp_port, self.sim.opt.tftp_blksize
            )
        else:
            fetch = Fetch(Outcome.SKIPPED, f"{scheme or 'no'} scheme not simulated")
        if fetch.outcome is not Outcome.OK:
            self.record(step, url, fetch)
            dest.unlink(missing_ok=True)
            return False
        # ONIE's lib/onie/functions `get_image_type` treats a file with the cookie in its first
        # 100 lines as an updater (onie-self-update), not a NOS installer.
        if UPDATER_COOKIE.encode() in net.read_head_lines(dest):
            self.record(
                step,
                url,
                replace(fetch, outcome=Outcome.REJECTED, detail="ONIE updater, not a NOS installer"),
            )
            return False
        verify = None
        if self.sim.opt.verify:
            _ok, verify = self.sim._verify(self.identity, dest)
        run = await run_installer(self.session, self.identity, url, dest, self.sim.opt.installer, verify)
        if run.outcome is RunOutcome.FAILED:
            # the header's own checks (verified) refuse; a later stage fails the install
            outcome = Outcome.REJECTED if run.stage == "verified" else Outcome.INSTALL_FAILED
            self.record(step, url, replace(fetch, outcome=outcome, detail=run.message), run)
            dest.unlink(missing_ok=True)
            return False
        if run.outcome is RunOutcome.HUNG:
            fetch = replace(fetch, outcome=Outcome.HUNG, detail=run.message)
        self.record(step, url, fetch, run)
        saved = None
        if self.sim.opt.save_dir:
            self.sim.opt.save_dir.mkdir(parents=True, exist_ok=True)
            mac = (self.identity.mac or "").replace(":", "-")
            saved = self.sim.opt.save_dir / f"{mac}-{url.rsplit('/', 1)[-1]}"
            shutil.move(dest, saved)
        self.result.found = Found(url, step, fetch.size, fetch.sha256 or "", verify, saved, run)
        return True


def _is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


async def _ip(*args: str) -> bool:
    """`ip ...`; True when it worked (an address that already exists is not ours to remove)."""
    with contextlib.suppress(OSError):
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        return await proc.wait() == 0
    return False


async def simulate(
    options: SimOptions,
    idents: Sequence[OnieIdentity],
    say: Callable[[str], None] | None = None,
    on_done: Callable[[SimResult], None] | None = None,
) -> list[SimResult]:
    async with Simulator(options, say) as sim:
        return await sim.run_many(idents, on_done)
