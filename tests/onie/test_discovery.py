"""onie.discovery: option parsers/encoders against bytes written out by hand from the RFCs and
from what ONIE's own scripts put on the wire (rootconf/default/lib/onie/functions `udhcpc_args`,
`import_vivso`; bin/exec_installer `wget_run`, `waterfall`)."""

from __future__ import annotations

import pytest

from onie import discovery as d
from onie.identity import OnieIdentity

KVM = OnieIdentity(platform="x86_64-kvm_x86_64-r0", mac="52:54:00:12:34:56", serial="KVM1234")
ACCTON = OnieIdentity(
    platform="x86_64-accton_as7712_32x-r0", mac="00:11:22:33:44:55", serial="AS7712X1", switch_asic="bcm"
)


# -- platform strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "platform, parts",
    [
        ("x86_64-kvm_x86_64-r0", ("x86_64", "kvm_x86_64", "0")),
        ("x86_64-accton_as7712_32x-r0", ("x86_64", "accton_as7712_32x", "0")),
        ("arm64-celestica_e1031-r12", ("arm64", "celestica_e1031", "12")),
        ("powerpc-quanta_lb9-r0", ("powerpc", "quanta_lb9", "0")),
        ("armv7a-foo-rbar_baz-r3", ("armv7a", "foo-rbar_baz", "3")),
    ],
)
def test_split_platform(platform, parts):
    assert d.split_platform(platform) == parts
    assert d.platform_name(*parts) == platform


@pytest.mark.parametrize("bad", ["x86_64", "x86_64-kvm", "kvm_x86_64-r0", "", "x86_64-kvm-r"])
def test_split_platform_rejects(bad):
    assert d.split_platform(bad) is None


def test_complete_both_ways():
    full = d.complete(OnieIdentity(platform="x86_64-kvm_x86_64-r0"))
    assert (full.arch, full.vendor_machine, full.revision) == ("x86_64", "kvm_x86_64", "0")
    back = d.complete(OnieIdentity(arch="arm64", vendor_machine="acme_s1", revision="2"))
    assert back.platform == "arm64-acme_s1-r2"
    assert d.complete(OnieIdentity(arch="arm64")).platform is None


# -- option 60 ------------------------------------------------------------------------------------


def test_vendor_class_new_form():
    assert d.encode_vendor_class(KVM) == b"onie_vendor:x86_64-kvm_x86_64-r0"
    ident = d.parse_vendor_class("onie_vendor:x86_64-accton_as7712_32x-r0")
    assert ident.platform == "x86_64-accton_as7712_32x-r0"
    assert ident.arch == "x86_64" and ident.vendor_machine == "accton_as7712_32x" and ident.revision == "0"


def test_vendor_class_old_form_from_design_spec():
    # ONIE design spec: "onie_vendor:VENDOR_MACHINE:powerpc"
    ident = d.parse_vendor_class("onie_vendor:VENDOR_MACHINE:powerpc")
    assert ident.vendor_machine == "VENDOR_MACHINE" and ident.arch == "powerpc"
    assert ident.platform is None


def test_vendor_class_not_onie():
    assert d.parse_vendor_class("PXEClient:Arch:00007:UNDI:003000") is None
    assert d.parse_vendor_class("udhcp 1.36.1") is None


# -- option 77 ------------------------------------------------------------------------------------


def test_user_class_rfc3004_length_byte():
    # RFC 3004 §4: each item is a length octet then the data; "onie_dhcp_user_class" is 20 bytes.
    assert d.encode_user_class() == b"\x14onie_dhcp_user_class"
    assert d.parse_user_classes(b"\x14onie_dhcp_user_class") == ["onie_dhcp_user_class"]


def test_user_class_without_length_byte_is_read_as_one_string():
    # busybox `-x 77:<hex>` puts the bare string on the wire; iPXE sends "iPXE" likewise.
    assert d.parse_user_classes(b"onie_dhcp_user_class") == ["onie_dhcp_user_class"]
    assert d.parse_user_classes(b"iPXE") == ["iPXE"]
    assert d.parse_user_classes(b"\x02ab\x01c") == ["ab", "c"]


# -- option 61 ------------------------------------------------------------------------------------


def test_client_id_serial():
    assert d.encode_client_id("KVM1234") == b"\x00KVM1234"
    assert d.parse_client_id(b"\x00KVM1234") == "KVM1234"
    # type 1 = Ethernet hardware address: not a serial
    assert d.parse_client_id(b"\x01\x52\x54\x00\x12\x34\x56") is None
    assert d.parse_client_id(b"\x00\xff\xfe") is None
    assert d.parse_client_id(b"\x00") is None


# -- option 125 -----------------------------------------------------------------------------------

# The request block ONIE builds with `printf %08X%02X%s 42623 $len $payload` where each sub-option
# is `printf %02X%02X%s code len hex(str)` (functions `make_str_opt`, `udhcpc_args`).
KVM_REQUEST_125 = (
    bytes.fromhex("0000A67F")  # enterprise 42623
    + bytes([2 + 10 + 2 + 6 + 2 + 1])  # data-len
    + b"\x03\x0akvm_x86_64"  # 3 machine
    + b"\x04\x06x86_64"  # 4 arch
    + b"\x05\x010"  # 5 machine revision
)


def test_request_vivso_golden():
    assert d.encode_request_vivso(KVM) == KVM_REQUEST_125


def test_vivso_parse_skips_other_enterprises_and_concatenates():
    other = bytes.fromhex("00000009") + b"\x03abc"  # Cisco's block, 3 bytes
    raw = other + KVM_REQUEST_125
    blocks = d.parse_vivso(raw)
    assert blocks[9] == b"abc"
    assert d.parse_suboptions(blocks[d.ONIE_ENTERPRISE]) == {3: b"kvm_x86_64", 4: b"x86_64", 5: b"0"}
    # RFC 3925 §4: several blocks of one enterprise are one stream
    split = bytes.fromhex("0000A67F") + b"\x02\x01\x03" + bytes.fromhex("0000A67F") + b"\x03abc"
    assert d.parse_vivso(split)[d.ONIE_ENTERPRISE] == b"\x01\x03abc"


def test_vivso_truncated_is_ignored_not_raised():
    assert d.parse_vivso(bytes.fromhex("0000A67F") + b"\x09abc") == {}
    assert d.parse_vivso(b"\x00\x00") == {}
    assert d.parse_suboptions(b"\x01\x09abc") == {}


def test_answer_vivso_golden():
    url = "http://198.18.0.1/onie-installer-x86_64-kvm_x86_64-r0.bin"
    raw = d.encode_answer_vivso(url)
    assert (
        raw == bytes.fromhex("0000A67F") + bytes([len(url) + 2]) + b"\x01" + bytes([len(url)]) + url.encode()
    )
    assert d.urls_from_vivso(raw) == {d.SubOption.INSTALLER_URL: url}
    both = d.encode_answer_vivso("http://a/i", "http://a/u")
    assert both == bytes.fromhex("0000A67F") + b"\x18" + b"\x01\x0ahttp://a/i" + b"\x02\x0ahttp://a/u"


def test_answer_options_114_and_125():
    url = "http://198.18.0.1/x.bin"
    opts = d.answer_options(url)
    assert opts[114] == url.encode()
    assert d.urls_from_vivso(opts[125])[d.SubOption.INSTALLER_URL] == url


def test_answer_too_long_url_is_refused():
    with pytest.raises(ValueError):
        d.encode_answer_vivso("http://x/" + "a" * 260)


def test_addresses_option_72():
    assert d.addresses(bytes([198, 18, 0, 1, 198, 18, 0, 2])) == ["198.18.0.1", "198.18.0.2"]
    assert d.addresses(b"http://198.18.0.1/") == []  # a URL in 72: ONIE cannot use it


# -- identity from a whole request ----------------------------------------------------------------


def test_identity_from_onie_request_options():
    opts = d.request_options(KVM)
    assert opts[55] == bytes([1, 3, 6, 7, 12, 15, 28, 42, 43, 54, 66, 67, 72, 114, 125])
    assert 150 not in opts[55]
    ident = d.identity_from_dhcp(opts, mac="52:54:00:12:34:56")
    assert ident == OnieIdentity(
        platform="x86_64-kvm_x86_64-r0",
        vendor_machine="kvm_x86_64",
        arch="x86_64",
        revision="0",
        serial="KVM1234",
        mac="52:54:00:12:34:56",
    )


def test_identity_from_one_sign_only():
    assert d.identity_from_dhcp({77: b"\x14onie_dhcp_user_class"}) == OnieIdentity()
    only125 = d.identity_from_dhcp({125: KVM_REQUEST_125})
    assert only125.platform == "x86_64-kvm_x86_64-r0"
    old = d.identity_from_dhcp({60: b"onie_vendor:acme_s1:x86_64", 125: KVM_REQUEST_125})
    # option 60 speaks first; 125 fills the revision
    assert old.vendor_machine == "acme_s1" and old.revision == "0" and old.platform == "x86_64-acme_s1-r0"


def test_not_onie():
    assert d.identity_from_dhcp({60: b"PXEClient:Arch:00007:UNDI:003000", 61: b"\x00abc"}) is None
    assert d.identity_from_dhcp({}) is None
    assert d.identity_from_dhcp({125: bytes.fromhex("00000009") + b"\x00"}) is None


def test_scapy_reads_our_request_options():
    scapy = pytest.importorskip("scapy.all")
    opts = d.request_options(KVM)
    pkt = scapy.BOOTP(chaddr=bytes.fromhex("525400123456"), xid=1) / scapy.DHCP(
        options=[("message-type", "discover")] + [(code, value) for code, value in opts.items()] + ["end"]
    )
    back = scapy.BOOTP(bytes(pkt))
    raw = {k: v for k, v, *_ in (o for o in back[scapy.DHCP].options if isinstance(o, tuple))}
    assert raw["vendor_class_id"] == b"onie_vendor:x86_64-kvm_x86_64-r0"


# -- HTTP headers ---------------------------------------------------------------------------------


def test_headers_roundtrip_and_case():
    ident = OnieIdentity(
        platform="x86_64-accton_as7712_32x-r0",
        serial="AS7712X1",
        mac="00:11:22:33:44:55",
        vendor_id="259",
        onie_version="2023.05",
    )
    headers = d.request_headers(ident)
    assert list(headers)[:2] == ["User-Agent", "ONIE-SERIAL-NUMBER"]
    assert headers["ONIE-MACHINE"] == "accton_as7712_32x"
    assert headers["ONIE-OPERATION"] == "os-install"
    assert headers["User-Agent"].startswith("onie/1.0 (")
    lower = {k.lower(): v for k, v in headers.items()}
    back = d.identity_from_headers(lower)
    assert back.platform == ident.platform and back.serial == "AS7712X1" and back.onie_version == "2023.05"


def test_headers_mac_upper_case_from_eeprom():
    back = d.identity_from_headers({"ONIE-ETH-ADDR": "00:11:22:AA:BB:CC"})
    assert back.mac == "00:11:22:aa:bb:cc"


def test_headers_user_agent_alone_and_not_onie():
    assert (
        d.identity_from_headers({"User-Agent": "onie/1.0 (Linux-4.9.95; BusyBox-v1.25.1)"}) == OnieIdentity()
    )
    assert d.identity_from_headers({"User-Agent": "curl/8.0"}) is None
    assert d.identity_from_headers({"ONIE-SERIAL-NUMBER": ""}) is None


# -- the waterfall --------------------------------------------------------------------------------


def test_default_names_order():
    names = [e.name for e in d.default_names(ACCTON)]
    assert names == [
        "onie-installer-x86_64-accton_as7712_32x-r0",
        "onie-installer-x86_64-accton_as7712_32x-r0.bin",
        "onie-installer-x86_64-accton_as7712_32x",
        "onie-installer-x86_64-accton_as7712_32x.bin",
        "onie-installer-accton_as7712_32x",
        "onie-installer-accton_as7712_32x.bin",
        "onie-installer-x86_64-bcm",
        "onie-installer-x86_64-bcm.bin",
        "onie-installer-x86_64",
        "onie-installer-x86_64.bin",
        "onie-installer",
        "onie-installer.bin",
    ]
    assert [e.rank for e in d.default_names(ACCTON)] == list(range(12))


def test_updater_names_and_unknown_asic_skipped():
    names = [e.name for e in d.default_names(KVM, d.Operation.UPDATE, suffixes=())]
    assert names == [
        "onie-updater-x86_64-kvm_x86_64-r0",
        "onie-updater-x86_64-kvm_x86_64",
        "onie-updater-kvm_x86_64",
        "onie-updater-x86_64",
        "onie-updater",
    ]


def test_tftp_waterfall_paths():
    paths = [e.path for e in d.tftp_waterfall(ACCTON, "198.18.0.2")]
    primary = "onie-installer-x86_64-accton_as7712_32x-r0"
    assert paths[0] == f"00-11-22-33-44-55/{primary}"
    # 198.18.0.2 = C6 12 00 02; prefixes of 8 chars down to 1
    assert paths[1:9] == [
        f"{p}/{primary}" for p in ["C6120002", "C612000", "C61200", "C6120", "C612", "C61", "C6", "C"]
    ]
    assert paths[9:] == [e.name for e in d.default_names(ACCTON)]


def test_match_request_every_waterfall_entry():
    for entry in d.tftp_waterfall(ACCTON, "198.18.0.2"):
        got = d.match_request("/" + entry.path, ACCTON, ip="198.18.0.2")
        assert got is not None and got.kind == entry.kind and got.place == entry.place, entry.path


def test_match_request_mac_dir_case_insensitive():
    got = d.match_request("00-11-22-33-44-55/onie-installer-x86_64-accton_as7712_32x-r0", ACCTON)
    assert got.place is d.Place.MAC_DIR
    upper = ACCTON.__class__(**{**vars(ACCTON), "mac": "00:11:22:33:44:55"})
    assert d.match_request("00-11-22-33-44-55/onie-installer", upper).kind is d.NameKind.BARE
    assert d.match_request("00-11-22-33-44-56/onie-installer", ACCTON) is None


def test_match_request_refuses_other_platforms_and_dirs():
    assert d.match_request("onie-installer-x86_64-kvm_x86_64-r0.bin", ACCTON) is None
    assert d.match_request("onie-installer-arm64.bin", ACCTON) is None
    assert d.match_request("C6120003/onie-installer", ACCTON, ip="198.18.0.2") is None
    assert d.match_request("a/b/onie-installer", ACCTON) is None
    assert d.match_request("images/onie-installer", ACCTON) is None
    assert d.match_request("grub.cfg", ACCTON) is None


def test_match_request_updater_and_query():
    got = d.match_request("/onie-updater-x86_64.bin?x=1", ACCTON)
    assert got.operation is d.Operation.UPDATE and got.kind is d.NameKind.ARCH


def test_platform_from_name():
    assert d.platform_from_name("/onie-installer-x86_64-kvm_x86_64-r0.bin") == "x86_64-kvm_x86_64-r0"
    assert d.platform_from_name("onie-installer-x86_64-kvm_x86_64-r0") == "x86_64-kvm_x86_64-r0"
    assert d.platform_from_name("onie-installer-x86_64.bin") is None
    assert d.platform_from_name("onie-installer") is None
    assert d.installer_file_name("x86_64-kvm_x86_64-r0") == "onie-installer-x86_64-kvm_x86_64-r0.bin"


# -- hostile input: the DHCP server feeds whatever arrives ------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.dictionaries(st.sampled_from([55, 60, 61, 77, 82, 125]), st.binary(max_size=300)))
def test_identity_from_dhcp_never_raises(options):
    ident = d.identity_from_dhcp(options, mac="zz")
    assert ident is None or isinstance(ident, OnieIdentity)


@given(
    st.dictionaries(
        st.sampled_from([d.HEADER_SERIAL, d.HEADER_ETH_ADDR, d.HEADER_MACHINE, "User-Agent"]), st.text()
    )
)
def test_identity_from_headers_never_raises(headers):
    d.identity_from_headers(headers)


@given(st.text(max_size=200))
def test_match_request_never_raises(path):
    d.match_request(path, KVM, ip="198.18.0.2")
    d.platform_from_name(path)
