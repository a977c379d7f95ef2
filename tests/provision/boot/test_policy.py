"""The boot policy, pure: Client in → BootDecision / RenderedFile out, for every arch and stage."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from onie import discovery
from onie.identity import OnieIdentity
from provision.boot.loaders import BootFiles
from provision.boot.policy import BootPolicy, ServerAddress, Stage, mac_from_path, profile_console
from provision.config.inventory import Device
from provision.config.lab import load_lab
from provision.config.profiles import ProfileRegistry
from provision.server.router import Router
from pxe.policy import BootDecision, Client, Event, RenderedFile, Service

LAB = """\
interfaces: [eth1]
subnets:
  - network: 198.18.10.0/24
    pool: [198.18.10.100-198.18.10.110]
boot:
  default: live
  unknown: {unknown}
  discover: live
  uefi_x64_loader: {loader}
  entries:
    live:
      x86_64: {{kernel: x/vmlinuz, initrd: x/initrd.gz, cmdline: quiet}}
      arm64: {{kernel: a/Image, initrd: a/initrd.gz, cmdline: console=ttyAMA0}}
    x86only:
      x86_64: {{kernel: x/vmlinuz}}
devices:
  - {{name: srv1, mac: "52:54:00:00:00:01", ip: 198.18.10.11, hostname: srv1.lab, profile: kvm_x86_64,
      group: lab}}
  - {{name: arm1, mac: "52:54:00:00:00:02", boot: x86only, install: always}}
  - {{name: once, mac: "52:54:00:00:00:03"}}
groups:
  lab: {{install: always}}
"""
ONCE = "52:54:00:00:00:03"
KNOWN = "52:54:00:00:00:01"
ARMDEV = "52:54:00:00:00:02"
STRANGER = "52:54:00:99:99:99"
S = "198.18.10.1"


@pytest.fixture
def make_policy(tmp_path):
    for rel in ("x/vmlinuz", "x/initrd.gz", "a/Image", "a/initrd.gz"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    grub = tmp_path / "grubaa64.efi"
    grub.write_bytes(b"grub")

    def make(unknown="ignore", loader="ipxe.efi", port=None):
        text = LAB.format(unknown=unknown, loader=loader)
        if port:
            text += f"http_port: {port}\n"
        (tmp_path / "lab.yml").write_text(text)
        cfg = load_lab(tmp_path / "lab.yml")
        files = BootFiles(Path("/usr/lib/ipxe"), grub, {S: tmp_path / "http.efi"})
        servers = [ServerAddress(ipaddress.IPv4Network("198.18.10.0/24"), S)]
        return BootPolicy(cfg, servers, files, console_of=profile_console(ProfileRegistry()))

    return make


def dhcp(mac=KNOWN, arch=None, vc=None, ipxe=False, **kw) -> Client:
    return Client(mac=mac, service=Service.DHCP, arch=arch, vendor_class=vc, is_ipxe=ipxe, **kw)


@pytest.mark.parametrize(
    ("arch", "vc", "ipxe", "stage", "bootfile"),
    [
        (0, "PXEClient:Arch:00000:UNDI:002001", False, Stage.BIOS_PXE, "undionly.kpxe"),
        (7, "PXEClient:Arch:00007:UNDI:003000", False, Stage.UEFI_PXE, "ipxe.efi"),
        (9, "PXEClient:Arch:00009:UNDI:003000", False, Stage.UEFI_PXE, "ipxe.efi"),
        (16, "HTTPClient:Arch:00016:UNDI:003000", False, Stage.UEFI_HTTP, f"http://{S}/ipxe.efi"),
        (11, "PXEClient:Arch:00011:UNDI:003000", False, Stage.ARM64_PXE, "grubaa64.efi"),
        (
            19,
            "HTTPClient:Arch:00019:UNDI:003000",
            False,
            Stage.ARM64_HTTP,
            f"http://{S}/grubaa64-http-{S}.efi",
        ),
        (0, "PXEClient:Arch:00000:UNDI:002001", True, Stage.IPXE, f"http://{S}/ipxe/52-54-00-00-00-01.ipxe"),
        (7, "PXEClient:Arch:00007:UNDI:003000", True, Stage.IPXE, f"http://{S}/ipxe/52-54-00-00-00-01.ipxe"),
    ],
)
def test_every_firmware_stage(make_policy, arch, vc, ipxe, stage, bootfile):
    policy = make_policy()
    client = dhcp(arch=arch, vc=vc, ipxe=ipxe)
    d = policy.decide(client)
    assert isinstance(d, BootDecision)
    assert d.bootfile == bootfile
    assert policy.stage_of(client) == stage
    assert d.ip == "198.18.10.11" and d.hostname == "srv1.lab"
    assert stage in d.note and "srv1" in d.note


def test_remembered_decisions_follow_the_device_and_the_client(make_policy):
    """decide() remembers its answers per (device, arch, iPXE, server address): the same client
    gets the same decision, another server address or an iPXE MAC its own, and a device enrolled
    meanwhile (a new inventory object) is decided afresh."""
    policy = make_policy(unknown="discover")
    pxe = dhcp(mac=STRANGER, arch=0, server_ip=S)
    first = policy.decide(pxe)
    assert first is not None and first.ip is None and "unknown" in first.note
    assert policy.decide(dhcp(mac=STRANGER, arch=0, server_ip=S)) == first
    assert policy.decide(dhcp(mac=STRANGER, arch=16, server_ip="198.18.10.2")).bootfile == (
        "http://198.18.10.2/ipxe.efi"
    )
    for mac in (STRANGER, "52:54:00:99:99:98"):
        ipxe = policy.decide(dhcp(mac=mac, arch=0, ipxe=True, server_ip=S))
        assert ipxe is not None and ipxe.bootfile == f"http://{S}/ipxe/{mac.replace(':', '-')}.ipxe"
    policy.fleet.enroll(Device(name="new1", mac=STRANGER, ip="198.18.10.20"), by="test")
    known = policy.decide(dhcp(mac=STRANGER, arch=0, server_ip=S))
    assert known is not None and known.ip == "198.18.10.20" and "new1" in known.note


def test_snponly_configurable(make_policy):
    policy = make_policy(loader="snponly.efi")
    assert policy.decide(dhcp(arch=7)).bootfile == "snponly.efi"
    assert policy.decide(dhcp(arch=16)).bootfile == f"http://{S}/snponly.efi"


def test_http_port_in_urls(make_policy):
    policy = make_policy(port=8080)
    assert policy.decide(dhcp(arch=0, ipxe=True)).bootfile.startswith(f"http://{S}:8080/ipxe/")


def test_plain_dhcp_client_gets_lease_only(make_policy):
    d = make_policy().decide(dhcp(arch=None))
    assert d.bootfile is None and d.ip == "198.18.10.11"


def test_unknown_ignored_or_discovered(make_policy):
    assert make_policy(unknown="ignore").decide(dhcp(mac=STRANGER, arch=0)) is None
    d = make_policy(unknown="discover").decide(dhcp(mac=STRANGER, arch=0))
    assert d.bootfile == "undionly.kpxe" and d.ip is None and "discover" in d.note


def test_ipxe_script_has_initrd_name_on_kernel_line(make_policy):
    r = make_policy().render(
        Client(mac="", service=Service.HTTP, ip="198.18.10.11"), "/ipxe/52-54-00-00-00-01.ipxe"
    )
    text = r.content.decode()
    assert text.startswith("#!ipxe\n")
    lines = text.splitlines()
    kernel = next(line for line in lines if line.startswith("kernel "))
    # Debian's 2019 iPXE EFI needs initrd=NAME on the kernel line (docs/netboot.md "iPXE: chain-loading").
    assert kernel == (
        f"kernel http://{S}/boot/live/x86_64/vmlinuz initrd=initrd.gz quiet console=ttyS0,115200"
        f" provision.report=http://{S}/api/v1/report?mac=52-54-00-00-00-01"
    )
    assert f"initrd http://{S}/boot/live/x86_64/initrd.gz" in lines
    assert lines[-1] == "boot"


def test_ipxe_script_for_unknown(make_policy):
    path = "/ipxe/52-54-00-99-99-99.ipxe"
    client = Client(mac="", service=Service.HTTP)
    assert make_policy(unknown="ignore").render(client, path).found is False
    text = make_policy(unknown="discover").render(client, path).content.decode()
    assert "unknown" in text and "initrd=initrd.gz quiet" in text


def test_ipxe_script_when_entry_lacks_arch(make_policy, tmp_path):
    r = make_policy().render(Client(mac="", service=Service.HTTP), "ipxe/52-54-00-00-00-02.ipxe")
    assert r.found  # a script that explains, rather than a 404 iPXE shows as a bare error
    # arm1's entry x86only has a kernel for x86_64, so it gets one:
    assert "boot/x86only/x86_64/vmlinuz" in r.content.decode()


def test_grub_cfg_per_mac(make_policy):
    policy = make_policy()
    client = Client(mac="", service=Service.TFTP, ip="198.18.10.11")
    text = policy.render(client, "grub/by-mac/52:54:00:00:00:01.cfg").content.decode()
    assert "linux /boot/live/arm64/Image console=ttyAMA0" in text
    assert "initrd /boot/live/arm64/initrd.gz" in text
    # arm1's entry has no arm64 kernel: an explaining config, not a crash
    text = policy.render(client, "grub/by-mac/52:54:00:00:00:02.cfg").content.decode()
    assert "no arm64 kernel" in text
    assert policy.render(client, "grub/by-mac/52:54:00:99:99:99.cfg").found is False


def test_grub_generic_cfg_uses_client_mac(make_policy):
    policy = make_policy(unknown="discover")
    text = policy.render(Client(mac=STRANGER, service=Service.HTTP), "/grub/grub.cfg").content.decode()
    assert "linux /boot/live/arm64/Image" in text


def test_boot_files_and_binaries(make_policy, tmp_path):
    policy = make_policy()
    c = Client(mac="", service=Service.HTTP)
    assert policy.render(c, "/boot/live/x86_64/vmlinuz").path == tmp_path / "x/vmlinuz"
    assert policy.render(c, "boot/live/arm64/initrd.gz").path == tmp_path / "a/initrd.gz"
    assert policy.render(c, "boot/live/arm64/passwd").found is False
    assert policy.render(c, "boot/nope/arm64/Image").found is False
    assert policy.render(c, "boot/live/mips/Image").found is False
    assert policy.render(c, "undionly.kpxe").path == Path("/usr/lib/ipxe/undionly.kpxe")
    assert policy.render(c, "grubaa64.efi").path == tmp_path / "grubaa64.efi"
    assert policy.render(c, f"grubaa64-http-{S}.efi").path == tmp_path / "http.efi"
    assert policy.render(c, "something/else.txt") is None  # the file tree answers


def test_server_chosen_by_relay(make_policy):
    policy = make_policy()
    policy.servers.append(ServerAddress(ipaddress.IPv4Network("198.19.0.0/24"), "198.19.0.1"))
    d = policy.decide(dhcp(arch=16, relay="198.19.0.254"))
    assert d.bootfile == "http://198.19.0.1/ipxe.efi"


class StandInOnie:
    """Stands in for OniePolicy (a mock: only which door the router opens is under test here; the
    real OniePolicy behind the router is tested in tests/provision/onie/test_policy.py)."""

    def __init__(self) -> None:
        self.identities: list[OnieIdentity] = []

    def decide(self, client, identity):
        self.identities.append(identity)
        return BootDecision(bootfile="onie-installer", note="onie")

    def render(self, client, path):
        return RenderedFile(content=b"onie") if path.startswith("onie") else None


def test_router_sends_onie_to_the_onie_policy(make_policy):
    options = discovery.request_options(OnieIdentity(platform="x86_64-kvm_x86_64-r0", serial="S1"))
    client = dhcp(mac=STRANGER, arch=7, options=options)
    assert Router(make_policy(unknown="discover")).decide(client) is None  # no ONIE policy: silent
    onie = StandInOnie()
    router = Router(make_policy(), onie)
    assert router.decide(client).note == "onie"
    assert onie.identities[0].platform == "x86_64-kvm_x86_64-r0" and onie.identities[0].serial == "S1"
    assert router.render(client, "onie-installer-x86_64").content == b"onie"
    # everything else is the server boot policy's: its files first, then nothing
    assert b"configfile" in router.render(Client(mac="", service=Service.TFTP), "/grub/grub.cfg").content
    assert (
        Router(make_policy(unknown="discover"), onie).decide(dhcp(mac=STRANGER, arch=0)).bootfile
        == "undionly.kpxe"
    )


def test_mac_from_path():
    assert mac_from_path("ipxe/52-54-00-AA-00-01.ipxe") == "52:54:00:aa:00:01"
    assert mac_from_path("grub/by-mac/52:54:00:aa:00:01.cfg") == "52:54:00:aa:00:01"
    assert mac_from_path("grub/grub.cfg") is None


def test_grub_cfg_without_known_mac_redirects_by_grubs_own(make_policy):
    text = make_policy().render(Client(mac="", service=Service.TFTP), "/grub/grub.cfg").content.decode()
    assert "configfile $prefix/by-mac/$net_default_mac.cfg" in text


def test_server_chosen_by_reserved_ip_on_a_second_link(make_policy):
    policy = make_policy()
    policy.servers.insert(0, ServerAddress(ipaddress.IPv4Network("198.19.0.0/24"), "198.19.0.1"))
    assert policy.decide(dhcp(arch=16)).bootfile == f"http://{S}/ipxe.efi"  # srv1 is 198.18.10.11


def test_server_chosen_by_receiving_interface_on_two_links(make_policy):
    """Two directly attached links: an unknown client (no IP yet) gets the address of the link its
    DHCP request came in on, in HTTP-boot and iPXE URLs alike; a relayed one still goes by giaddr."""
    policy = make_policy(unknown="discover")
    s2 = "198.19.0.1"
    policy.servers[:] = [
        ServerAddress(ipaddress.IPv4Network("198.18.10.0/24"), S, "s0"),
        ServerAddress(ipaddress.IPv4Network("198.19.0.0/24"), s2, "s1"),
        ServerAddress(ipaddress.IPv4Network("198.19.5.0/24"), S),  # relayed, reached via s0's address
    ]
    for iface, addr in (("s0", S), ("s1", s2)):
        http = policy.decide(
            dhcp(mac=STRANGER, arch=16, vc="HTTPClient:Arch:00016:UNDI:003000", interface=iface)
        )
        assert http.bootfile == f"http://{addr}/ipxe.efi"
        ipxe = policy.decide(dhcp(mac=STRANGER, arch=7, ipxe=True, interface=iface))
        assert ipxe.bootfile == f"http://{addr}/ipxe/52-54-00-99-99-99.ipxe"
    assert policy.decide(dhcp(mac=STRANGER, arch=16, interface="s1")).bootfile == f"http://{s2}/ipxe.efi"
    relayed = policy.decide(dhcp(mac=STRANGER, arch=16, interface="s1", relay="198.19.5.254"))
    assert relayed.bootfile == f"http://{S}/ipxe.efi"
    # an interface we do not serve on says nothing: the old hints (and then the first address) decide
    assert policy.decide(dhcp(mac=STRANGER, arch=16, interface="lo")).bootfile == f"http://{S}/ipxe.efi"


def _script(pol: BootPolicy, mac: str, ipxe: bool = True) -> str:
    if ipxe:
        got = pol.render(Client(mac=mac, service=Service.HTTP), f"ipxe/{mac.replace(':', '-')}.ipxe")
    else:
        got = pol.render(Client(mac=mac, service=Service.TFTP), f"grub/by-mac/{mac}.cfg")
    assert got is not None and got.content is not None
    return got.content.decode()


@pytest.mark.parametrize("ipxe", [True, False], ids=["ipxe", "grub"])
def test_install_once_then_local_disk(make_policy, ipxe):
    """A known server installs only when armed, once: after the installer's report of success its
    next script boots the local disk (the reinstall loop of every-boot netboot is gone)."""
    pol = make_policy()
    assert pol.device(ONCE).install is None  # the default: armed
    local = _script(pol, ONCE, ipxe)
    assert "boots its local disk" in local and "not armed" in local and "vmlinuz" not in local
    pol.fleet.arm("once", None, by="test")
    install = _script(pol, ONCE, ipxe)
    kernel = "x/vmlinuz" if ipxe else "a/Image"
    assert (
        kernel.split("/")[1] in install
        and "provision.report=http://198.18.10.1/api/v1/report?mac=" in install
    )
    pol.fleet.on_event(
        Event("installer.report", mac=ONCE, ip="198.18.10.50", detail={"stage": "complete", "status": "ok"})
    )
    after = _script(pol, ONCE, ipxe)
    assert "boots its local disk" in after and "installed" in after
    assert pol.fleet.intent("once").outcome == "installed"
    # install: always (here through the device's group) boots the installer every time
    assert "boots its local disk" not in _script(pol, KNOWN, ipxe)
    assert "provision.report=" in _script(pol, KNOWN, ipxe)


def test_arming_ends_after_handouts_without_a_report(make_policy):
    pol = make_policy()
    pol.fleet.arm("once", None, by="test")
    for _ in range(3):
        assert "vmlinuz" in _script(pol, ONCE)
    assert "no report of success" in _script(pol, ONCE)


def test_http_base_brackets_an_ipv6_link_local_address(make_policy):
    pol = make_policy(port=8080)
    assert pol.http_base("198.18.10.1") == "http://198.18.10.1:8080"
    assert pol.http_base("fe80::1%sv0") == "http://[fe80::1%25sv0]:8080"
