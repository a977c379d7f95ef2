"""OniePolicy: decide (exact URL / inexact) and render (every waterfall name, per platform, pins),
with a temporary installers folder of small installers named and headed by convention."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from onie import discovery
from onie.identity import OnieIdentity
from provision.boot.loaders import BootFiles
from provision.boot.policy import ServerAddress
from provision.config import ConfigError, load_text
from provision.config.inventory import Device, Inventory
from provision.config.lab import load_lab
from provision.config.onie import ONIE, DiscoveryMode, OnieSettings, settings_from_section
from provision.config.profiles import ProfileRegistry
from provision.onie.policy import OniePolicy
from provision.onie.progress import record_identity
from provision.server.events import AddressBook, EventBus
from provision.server.root import build_router
from provision.store.sqlite import Store
from pxe.policy import BootDecision, Client, Event, Service

KVM = "x86_64-kvm_x86_64-r0"
ACCTON = "x86_64-accton_as7712_32x-r0"
ARM = "arm64-acme_s1-r1"
MAC = "52:54:00:12:34:56"
IP = "198.18.0.50"


def write_installer(folder: Path, name: str, platform: str | None, version: str = "1.0") -> Path:
    path = folder / name
    header = "#!/bin/sh\n"
    if platform:
        header += f"target_platform='{platform}'\n"
    header += f"nos_name='demo'\nnos_version='{version}'\nexit 0\n__PROVISION_PAYLOAD_BELOW__\n"
    path.write_bytes(header.encode() + b"payload for " + name.encode())
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "installers"
    d.mkdir()
    write_installer(d, discovery.installer_file_name(KVM), KVM)
    write_installer(d, discovery.installer_file_name(ACCTON), ACCTON)
    write_installer(d, "demo-2.0-accton.bin", ACCTON, version="2.0")
    # made elsewhere: no header we know, only ONIE's naming convention
    (d / discovery.installer_file_name(ARM)).write_bytes(b"#!/bin/sh\necho foreign\n")
    (d / "notes.txt").write_text("not an installer")
    return d


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def dhcp_client(
    platform: str = KVM, mac: str = MAC, serial: str = "SN-KVM-1", circuit: bytes | None = None
) -> Client:
    options = discovery.request_options(OnieIdentity(platform=platform, serial=serial))
    return Client(mac=mac, service=Service.DHCP, options=options, circuit_id=circuit)


def url_of(decision: BootDecision) -> str | None:
    """The exact installer URL of a decision: option 114, and the same in 125 sub-option 1."""
    raw = decision.extra_options.get(discovery.OPT_DEFAULT_URL)
    if raw is None:
        assert discovery.OPT_VIVSO not in decision.extra_options
        return None
    vivso = discovery.urls_from_vivso(decision.extra_options[discovery.OPT_VIVSO])
    assert vivso[discovery.SubOption.INSTALLER_URL] == raw.decode()
    return raw.decode()


def http_client(platform: str | None = KVM, mac: str = MAC, serial: str = "SN-KVM-1", ip: str = IP) -> Client:
    headers = {}
    if platform:
        headers = discovery.request_headers(
            OnieIdentity(platform=platform, mac=mac.upper(), serial=serial, onie_version="2023.05")
        )
    return Client(mac="00:00:00:00:00:00", service=Service.HTTP, ip=ip, headers=headers)


def policy(folder: Path, **kw) -> tuple[OniePolicy, Recorder]:
    rec = Recorder()
    settings = kw.pop("settings", None) or OnieSettings(installers=folder)
    return OniePolicy(settings, events=rec, url_base=kw.pop("url_base", "http://198.18.0.1:8080"), **kw), rec


# -- decide ----------------------------------------------------------------------------------------


def test_decide_exact_url(folder):
    pol, rec = policy(folder)
    dec = pol.decide(dhcp_client())
    assert url_of(dec) == f"http://198.18.0.1:8080/onie-installer-{KVM}.bin"
    assert (
        discovery.OPT_WWW_SERVER not in dec.extra_options
    )  # port 8080: ONIE's inexact HTTP would not reach it
    assert rec.events[0].kind == "onie.discovered"
    assert rec.events[0].detail == {
        "serial": "SN-KVM-1",
        "platform": KVM,
        "onie_version": None,
        "source": "dhcp",
    }


def test_option_72_only_where_it_is_the_way_in(folder):
    # inexact: option 72 names our HTTP server (port 80) for ONIE's HTTP waterfall
    inexact = OnieSettings(installers=folder, discovery=DiscoveryMode.INEXACT)
    pol, _ = policy(folder, settings=inexact, url_base="http://198.18.0.1")
    assert pol.decide(dhcp_client()).extra_options[72] == bytes([198, 18, 0, 1])
    # exact: the URL is the way in; 72 would only make ONIE run a failing installer once per name
    pol, _ = policy(folder, url_base="http://198.18.0.1")
    assert 72 not in pol.decide(dhcp_client()).extra_options


def test_decide_not_onie_or_no_installer(folder):
    pol, rec = policy(folder)
    assert pol.decide(Client(mac=MAC, service=Service.DHCP)) is None
    # no installer fits: still a lease (a switch without one loops through link-local, unreachable),
    # no installer in it, and an event that says why
    lease = pol.decide(dhcp_client(platform="x86_64-nobody_n1-r0"))
    assert lease is not None and not lease.extra_options and lease.bootfile is None
    assert "no installer" in (lease.note or "")
    refused = [e for e in rec.events if e.kind == "device.refused"]
    assert refused and refused[-1].detail["code"] == "no-installer"
    unconfigured = OniePolicy(OnieSettings())
    assert unconfigured.decide(dhcp_client()) is None


@pytest.mark.parametrize(
    "mode, bootfile, url",
    [
        (DiscoveryMode.INEXACT, f"onie-installer-{KVM}.bin", None),
        (DiscoveryMode.TFTP, f"onie-installer-{KVM}.bin", None),
        (DiscoveryMode.WATERFALL, None, None),
    ],
)
def test_decide_inexact_modes(folder, mode, bootfile, url):
    pol, _ = policy(
        folder, settings=OnieSettings(installers=folder, discovery=mode), url_base="http://198.18.0.1"
    )
    dec = pol.decide(dhcp_client())
    assert dec.bootfile == bootfile and url_of(dec) == url
    assert (72 in dec.extra_options) == (mode is DiscoveryMode.INEXACT)
    if mode is DiscoveryMode.WATERFALL:  # a lease alone would leave siaddr empty
        assert dec.next_server == "198.18.0.1"


def test_decide_without_base_url_falls_back_to_bootfile(folder):
    pol, _ = policy(folder, url_base=None)
    dec = pol.decide(dhcp_client())
    assert url_of(dec) is None and dec.bootfile == f"onie-installer-{KVM}.bin"


def test_discovered_event_deduplicated(folder):
    now = [1000.0]
    pol, rec = policy(folder, clock=lambda: now[0])
    pol.decide(dhcp_client())  # DISCOVER
    pol.decide(dhcp_client())  # REQUEST
    assert rec.kinds().count("onie.discovered") == 1
    now[0] += 61
    pol.decide(dhcp_client())
    assert rec.kinds().count("onie.discovered") == 2


# -- render: HTTP with headers ---------------------------------------------------------------------


def test_render_every_waterfall_name_by_headers(folder):
    pol, rec = policy(folder)
    ident = discovery.complete(OnieIdentity(platform=KVM, mac=MAC))
    for entry in discovery.default_names(ident):
        got = pol.render(http_client(), "/" + entry.name)
        assert got is not None and got.found and got.path.name == f"onie-installer-{KVM}.bin", entry.name
    fetched = [e for e in rec.events if e.kind == "installer.fetched"]
    assert len(fetched) == len(discovery.default_names(ident))
    assert fetched[0].mac == MAC and fetched[0].detail["file"] == f"onie-installer-{KVM}.bin"
    assert fetched[0].detail["protocol"] == "http" and fetched[0].detail["version"] == "1.0"
    assert rec.kinds().count("onie.discovered") == 1


def test_render_other_platform_names_are_not_found(folder):
    pol, rec = policy(folder)
    for name in (f"onie-installer-{ACCTON}.bin", "onie-installer-arm64", "onie-installer-accton_as7712_32x"):
        got = pol.render(http_client(), "/" + name)
        assert got is not None and not got.found, name
    assert "installer.fetched" not in rec.kinds()


def test_render_updater_and_non_onie_paths(folder):
    pol, _ = policy(folder)
    assert not pol.render(http_client(), "/onie-updater-x86_64").found  # we serve no updaters
    assert pol.render(http_client(), "/grub.cfg") is None  # not ours: the file tree answers
    assert pol.render(http_client(), "/boot/x/onie-installer") is None


def test_render_platform_with_foreign_installer_by_name(folder):
    pol, _ = policy(folder)
    got = pol.render(http_client(platform=ARM, mac="02:00:00:00:00:01"), "/onie-installer-arm64")
    assert got.found and got.path.name == f"onie-installer-{ARM}.bin"


def test_render_without_any_identity(folder):
    pol, _ = policy(folder)
    anonymous = Client(
        mac="00:00:00:00:00:00", service=Service.HTTP, ip="198.18.0.99", headers={"User-Agent": "curl/8"}
    )
    # the exact URL names the platform: unambiguous
    assert pol.render(anonymous, f"/onie-installer-{KVM}.bin").path.name == f"onie-installer-{KVM}.bin"
    # a generic name could be anyone's: refuse rather than guess
    assert not pol.render(anonymous, "/onie-installer.bin").found
    assert not pol.render(anonymous, "/onie-installer-x86_64").found


# -- render: TFTP, identity from DHCP by address ----------------------------------------------------


def test_long_url_rides_in_option_114_only(folder):
    pol, _ = policy(folder, url_base="http://198.18.0.1/" + "x" * 240)
    dec = pol.decide(dhcp_client())
    assert discovery.OPT_VIVSO not in dec.extra_options
    assert len(dec.extra_options[discovery.OPT_DEFAULT_URL]) > discovery.ANSWER_URL_MAX


def test_tftp_waterfall_by_address_learned_from_dhcp(folder):
    book = AddressBook()  # the server's IP -> MAC book, which learns from its DHCP events
    pol, rec = policy(folder, mac_of_ip=book)
    pol.decide(dhcp_client())
    book.learn(Event("dhcp.ack", mac=MAC, ip=IP))
    tftp = Client(mac="00:00:00:00:00:00", service=Service.TFTP, ip=IP)
    ident = discovery.complete(OnieIdentity(platform=KVM, mac=MAC.upper()))
    for entry in discovery.tftp_waterfall(ident, IP):
        got = pol.render(tftp, entry.path)
        assert got.found and got.path.name == f"onie-installer-{KVM}.bin", entry.path
    fetched = [e for e in rec.events if e.kind == "installer.fetched"]
    assert fetched[0].mac == MAC and fetched[0].detail["protocol"] == "tftp"
    # another switch's MAC directory, another address's hex directory
    assert not pol.render(tftp, f"02-00-00-00-00-09/onie-installer-{KVM}").found
    assert not pol.render(tftp, f"C6120033/onie-installer-{KVM}").found


def test_tftp_mac_directory_alone_identifies(folder):
    pol, _ = policy(folder)
    pol.decide(dhcp_client(platform=ACCTON, mac="00:11:22:33:44:55"))
    tftp = Client(mac="00:00:00:00:00:00", service=Service.TFTP, ip="198.18.0.77")  # address unknown
    got = pol.render(tftp, f"00-11-22-33-44-55/onie-installer-{ACCTON}")
    assert got.found and got.path.name == f"onie-installer-{ACCTON}.bin"


def test_mac_of_ip_callback(folder):
    pol, _ = policy(folder, mac_of_ip={IP: MAC}.get)
    pol.decide(dhcp_client())
    got = pol.render(Client(mac="00:00:00:00:00:00", service=Service.TFTP, ip=IP), "onie-installer")
    assert got.found and got.path.name == f"onie-installer-{KVM}.bin"


def test_asic_name_needs_asic(folder):
    pol, _ = policy(folder, asic_of_platform={KVM: "qemu"}.get)
    assert pol.render(http_client(), "/onie-installer-x86_64-qemu.bin").found
    pol2, _ = policy(folder)
    assert not pol2.render(http_client(), "/onie-installer-x86_64-qemu.bin").found


# -- pins ------------------------------------------------------------------------------------------


def test_inventory_pin_by_serial_and_switch_port(folder):
    inv = Inventory(
        [
            Device(name="leaf-01", serial="AS-1", installer="demo-2.0-accton.bin", install="always"),
            Device(name="leaf-02", switch_port="Eth1/2", installer="2.0", ip="198.18.0.22"),
        ]
    )
    pol, rec = policy(folder, inventory=inv)
    pol.fleet.arm("leaf-02", None, by="test")
    assert pol.choose(OnieIdentity(platform=ACCTON, serial="as-1")).entry.name == "demo-2.0-accton.bin"
    got = pol.render(http_client(platform=ACCTON, mac="00:11:22:33:44:55", serial="AS-1"), "/onie-installer")
    assert got.path.name == "demo-2.0-accton.bin"
    fetched = [e for e in rec.events if e.kind == "installer.fetched"][-1]
    assert fetched.detail["version"] == "2.0" and "leaf-01" in fetched.detail["reason"]
    assert rec.events[-1].kind == "device.installing" and rec.events[-1].detail["name"] == "leaf-01"
    # leaf-02 is known by its switch port only: pinned by NOS version, and its reservation applies
    dec = pol.decide(dhcp_client(platform=ACCTON, mac="00:11:22:33:44:66", serial="X", circuit=b"Eth1/2"))
    assert dec.hostname == "leaf-02" and dec.ip == "198.18.0.22" and dec.note.startswith("leaf-02: ")
    got = pol.render(http_client(platform=ACCTON, mac="00:11:22:33:44:66", serial="X"), "/onie-installer")
    assert got.path.name == "demo-2.0-accton.bin"
    # a switch in no inventory, while the inventory lists devices: not installed (onie.unknown
    # defaults to ignore then), and the event says why
    got = pol.render(http_client(platform=ACCTON, mac="00:11:22:33:44:77", serial="Y"), "/onie-installer")
    assert not got.found
    assert rec.events[-1].kind == "device.refused" and rec.events[-1].detail["code"] == "unknown-ignored"


def test_pin_for_another_platform_is_refused(folder):
    inv = Inventory([Device(name="leaf-01", mac=MAC, installer="demo-2.0-accton.bin", install="always")])
    pol, _ = policy(folder, inventory=inv)
    choice = pol.choose(OnieIdentity(platform=KVM, mac=MAC))
    assert choice.entry is None and "not x86_64-kvm_x86_64-r0" in choice.reason
    lease = pol.decide(dhcp_client())
    assert lease.hostname == "leaf-01" and not lease.extra_options and "no installer" in lease.note
    assert not pol.render(http_client(), "/onie-installer").found


def test_settings_pins(folder):
    settings = OnieSettings(
        installers=folder,
        platforms={ACCTON: "demo-2.0"},
        devices={"SN-KVM-1": "missing.bin"},
        switch_ports={},
    )
    pol, _ = policy(folder, settings=settings)
    assert pol.choose(OnieIdentity(platform=ACCTON)).entry.name == "demo-2.0-accton.bin"
    missing = pol.choose(OnieIdentity(platform=KVM, serial="SN-KVM-1"))
    assert missing.entry is None and "not found" in missing.reason


# -- lab.yml section --------------------------------------------------------------------------------


def test_schema_loads(folder, tmp_path):
    text = f"""
installers: {folder}
discovery: inexact
url: http://198.18.0.1
platforms:
  {ACCTON}: demo-2.0-accton.bin
devices:
  52-54-00-12-34-56: onie-installer-{KVM}.bin
switch_ports:
  "Eth1/1": "2.0"
report: false
"""
    settings = settings_from_section(load_text(text, ONIE, tmp_path / "lab.yml"))
    assert settings.installers == folder and settings.discovery is DiscoveryMode.INEXACT
    assert settings.devices == {MAC: f"onie-installer-{KVM}.bin"} and settings.report is False
    assert settings_from_section(None) == OnieSettings()


def test_schema_errors_name_the_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_text("installers: x\ndiscovry: exact\n", ONIE, tmp_path / "lab.yml")
    assert "lab.yml:2:1" in str(exc.value) and "discovery" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_text("url: tftp://x/\n", ONIE, tmp_path / "lab.yml")
    assert "lab.yml:1:6" in str(exc.value)


# -- from lab.yml, as `provision serve` builds it ---------------------------------------------------


def test_router_built_from_lab_as_serve_builds_it(folder, tmp_path):
    lab = tmp_path / "lab.yml"
    lab.write_text(
        f"interfaces: [lo]\nmode: proxy\nhttp_port: 8080\nonie:\n  installers: {folder}\n  discovery: exact\n"
        "devices:\n  - {name: leaf-01, serial: AS-1, installer: demo-2.0-accton.bin, install: always}\n"
    )
    cfg = load_lab(lab)
    servers = [ServerAddress(ipaddress.IPv4Network("127.0.0.0/8"), "127.0.0.1", "lo")]
    files = BootFiles(tmp_path)
    router = build_router(cfg, servers, files, EventBus(), AddressBook(), ProfileRegistry())
    pol = router.onie
    assert pol is not None and pol.settings.installers == folder
    assert pol.choose(OnieIdentity(platform=ACCTON, serial="AS-1")).entry.name == "demo-2.0-accton.bin"
    assert pol.installer_url(KVM, dhcp_client()) == f"http://127.0.0.1:8080/onie-installer-{KVM}.bin"
    # the router sends ONIE's DHCP to the ONIE policy; the URL names the address the DHCP server
    # put in siaddr (Client.server_ip), so the two always agree
    answer = router.decide(replace(dhcp_client(platform=ACCTON, serial="AS-1"), server_ip="127.0.0.9"))
    assert url_of(answer) == "http://127.0.0.9:8080/onie-installer-x86_64-accton_as7712_32x-r0.bin"
    assert answer.hostname == "leaf-01"
    lab.write_text(f"interfaces: [lo]\nmode: proxy\nonie:\n  installers: {folder}\n  platfroms: {{}}\n")
    with pytest.raises(ConfigError) as exc:
        load_lab(lab)
    assert "lab.yml:5:3" in str(exc.value) and "platforms" in str(exc.value)


def test_record_identity_writes_the_devices_table(folder, tmp_path):
    with Store(tmp_path / "p.db") as store:
        pol = OniePolicy(
            OnieSettings(installers=folder), events=record_identity(store), url_base="http://198.18.0.1"
        )
        pol.decide(dhcp_client())
        pol.render(http_client(), "/onie-installer")  # adds onie_version from the headers
        (rec,) = store.devices()
    assert rec.mac == MAC and rec.serial == "SN-KVM-1" and rec.platform == KVM
    assert rec.identity["onie_version"] == "2023.05" and rec.identity["source"] == "http"


def test_catalog_lists_the_folder_only_when_it_changes(folder):
    pol, _ = policy(folder)
    now = [100.0]
    pol.catalog.clock = lambda: now[0]
    for _ in range(5):
        assert pol.decide(dhcp_client()) is not None
    assert pol.catalog.scans == 1  # five DISCOVERs, one listing
    # a new installer renamed into place (as `provision onie-installer` writes): listed again
    write_installer(folder, ".partial", ACCTON, version="3.0").rename(folder / "demo-3.0-accton.bin")
    assert pol.choose(OnieIdentity(platform=ACCTON), dev=Device("x", installer="3.0")).entry is not None
    assert pol.catalog.scans == 2
    # the chosen file copied over in place (the folder's mtime does not change): re-read, not stale
    path = folder / discovery.installer_file_name(KVM)
    write_installer(folder, path.name, KVM, version="1.1-longer")
    fetched = []
    pol.events = fetched.append
    assert pol.render(http_client(), "/onie-installer").path == path
    assert [e.detail["version"] for e in fetched if e.kind == "installer.fetched"] == ["1.1-longer"]


def test_catalog_never_hands_out_a_file_copied_over_with_another_platform(folder):
    pol, _ = policy(folder)
    now = [100.0]
    pol.catalog.clock = lambda: now[0]
    assert pol.choose(OnieIdentity(platform=KVM)).entry.name == f"onie-installer-{KVM}.bin"
    # copied over in place (no folder mtime change) by an installer for another platform
    write_installer(folder, f"onie-installer-{KVM}.bin", ACCTON, version="9.9")
    assert pol.choose(OnieIdentity(platform=KVM)).entry is None
    assert pol.choose(OnieIdentity(platform=ACCTON)).entry is not None


def test_catalog_sees_a_file_rebuilt_in_place_within_a_second(folder):
    pol, _ = policy(folder)
    now = [100.0]
    pol.catalog.clock = lambda: now[0]
    old = write_installer(folder, "demo-1.0-accton.bin", ACCTON, version="1.0")
    assert pol.catalog.resolve_pin("2.0", ACCTON).entry.name == "demo-2.0-accton.bin"
    write_installer(folder, old.name, ACCTON, version="3.0-rebuilt")  # in place: folder unchanged
    assert pol.catalog.resolve_pin("3.0-rebuilt", ACCTON).entry is None  # listing still cached
    now[0] += 1.5  # RELIST_S later
    assert pol.catalog.resolve_pin("3.0-rebuilt", ACCTON).entry.name == old.name


def test_onie_discovered_carries_the_leased_address(folder):
    pol, rec = policy(folder)
    pol.decide(dhcp_client())
    pol.learn(Event("dhcp.ack", mac=MAC, ip=IP))  # the server's event bus feeds it
    pol.render(http_client(ip=IP), "/onie-installer")  # headers add onie_version: a new event
    http_seen = [e for e in rec.events if e.kind == "onie.discovered" and e.detail["source"] == "http"]
    assert http_seen and http_seen[0].ip == IP


def test_exact_answer_puts_114_and_125_before_72(folder):
    pol, _ = policy(folder, url_base="http://198.18.0.1")
    assert list(pol.decide(dhcp_client()).extra_options) == [114, 125]


def test_generic_names_serve_the_switches_they_fit(folder):
    """ONIE's generic names (`onie-installer-<arch>`, ...) are served to the switches they fit, the
    platform's own file first; exact mode names the platform's URL and serves the generic file."""
    write_installer(folder, "onie-installer-x86_64", None)
    pol, _ = policy(folder)
    acme = "x86_64-acme_n9-r0"
    dec = pol.decide(dhcp_client(platform=acme, mac="00:11:22:33:44:99"))
    assert url_of(dec) == f"http://198.18.0.1:8080/onie-installer-{acme}.bin"
    got = pol.render(http_client(platform=acme, mac="00:11:22:33:44:99"), f"/onie-installer-{acme}.bin")
    assert got.found and got.path.name == "onie-installer-x86_64"
    # a platform with its own file keeps it; an arm64 switch does not take the x86_64 file
    assert pol.render(http_client(platform=KVM), "/onie-installer").path.name == f"onie-installer-{KVM}.bin"
    assert pol.choose(OnieIdentity(platform="arm64-acme_z1-r0")).entry is None
