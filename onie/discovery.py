"""ONIE's discovery rules, both ways: recognise a switch on the wire and know every name it tries.

Pure functions over bytes, strings and `OnieIdentity`; no I/O. The name waterfall lives in
`onie.waterfall` and platform strings in `onie.platform`; both are re-exported here, so callers
need only `from onie import discovery`. Sources (ONIE.md and ONIE's tree):
- the DHCP request: rootconf/default/lib/onie/functions `udhcpc_args` (option 60
  `onie_vendor:<platform>`, option 77, option 125 enterprise 42623 with sub-options 3/4/5) and
  bin/discover `sd_dhcp4`; ONIE's design spec lists the older `onie_vendor:VENDOR_MACHINE:arch`;
- the answer: functions `import_vivso`/`import_vendoropts` (RFC 3925 framing, then ONIE's own
  1-byte code / 1-byte length sub-options, 1 = installer URL, 2 = updater URL);
- the names: functions `onie_default_filenames`/`get_default_filenames` (each bare, then `.bin`);
- the TFTP waterfall: bin/exec_installer `waterfall` (MAC directory, hex-IP prefixes 8..1, root);
- the HTTP headers: bin/exec_installer `wget_run`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import replace

from onie.identity import OnieIdentity
from onie.platform import _merge, complete, merge, normalise_mac, platform_name, split_platform
from onie.waterfall import (
    IMAGE_SUFFIXES,
    NameKind,
    Operation,
    Place,
    WaterfallEntry,
    default_names,
    installer_file_name,
    ip_hex,
    mac_dir,
    match_request,
    normalise_path,
    operation_of,
    platform_from_name,
    tftp_waterfall,
)

# DHCPv4 option codes ONIE sends or reads [RFC 2132 unless said otherwise]
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_LOG_SERVER = 7
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_BROADCAST = 28
OPT_NTP = 42
OPT_VENDOR_SPECIFIC = 43
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61  # ONIE: 0x00 + serial number (type 0 = not a hardware address) [RFC 2132 §9.14]
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_WWW_SERVER = 72  # ONIE wants an IP address here, not a URL (ONIE.md pitfalls)
OPT_USER_CLASS = 77  # [RFC 3004]
OPT_DEFAULT_URL = 114  # "default-url" [RFC 3679]; ONIE reads it as an exact installer URL
OPT_VIVSO = 125  # vendor-identifying vendor-specific information [RFC 3925 §4]
OPT_TFTP_SERVER_IP = 150  # [RFC 5859]; ONIE reads it but does NOT ask for it (ONIE.md)

# Option 55 as ONIE sends it (ONIE.md; udhcpc's defaults plus bin/discover's `-O` list). No 150.
PARAMETER_REQUEST_LIST: tuple[int, ...] = (
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_LOG_SERVER,
    OPT_HOSTNAME,
    OPT_DOMAIN,
    OPT_BROADCAST,
    OPT_NTP,
    OPT_VENDOR_SPECIFIC,
    OPT_SERVER_ID,
    OPT_TFTP_SERVER,
    OPT_BOOTFILE,
    OPT_WWW_SERVER,
    OPT_DEFAULT_URL,
    OPT_VIVSO,
)

ONIE_ENTERPRISE = 42623  # IANA Private Enterprise Number of the Open Compute Project
VENDOR_CLASS_PREFIX = "onie_vendor:"
USER_CLASS = "onie_dhcp_user_class"
CLIENT_ID_TYPE_OTHER = 0  # RFC 2132 §9.14: type 0 = an identifier that is not a hardware address
USER_AGENT_PREFIX = "onie/"
MAX_SUBOPTION_LEN = 255  # 1-byte length in ONIE's sub-options and in RFC 3925's data-len


class SubOption(enum.IntEnum):
    """ONIE's sub-options inside option 125, enterprise 42623 (1-byte code, 1-byte length)."""

    INSTALLER_URL = 1  # server → switch
    UPDATER_URL = 2  # server → switch (only read in update/embed mode)
    MACHINE = 3  # switch → server: onie_machine, e.g. accton_as7712_32x
    ARCH = 4  # switch → server: onie_arch, e.g. x86_64
    MACHINE_REV = 5  # switch → server: onie_machine_rev, e.g. 0


# ---------------------------------------------------------------------------------------------
# DHCP: what the switch sends
# ---------------------------------------------------------------------------------------------


def encode_vendor_class(identity: OnieIdentity) -> bytes:
    """Option 60: `onie_vendor:<platform>` (functions `udhcpc_args`)."""
    ident = complete(identity)
    if not ident.platform:
        raise ValueError("an ONIE vendor class needs the platform (or arch, machine and revision)")
    return (VENDOR_CLASS_PREFIX + ident.platform).encode()


def parse_vendor_class(text: str) -> OnieIdentity | None:
    """Option 60 → identity, or None when it is not ONIE's. Prefix match on `onie_vendor:`.

    Two forms are seen: `onie_vendor:<platform>` (current ONIE) and `onie_vendor:VENDOR_MACHINE:arch`
    (ONIE's design spec, older releases).
    """
    if not text.startswith(VENDOR_CLASS_PREFIX):
        return None
    rest = text[len(VENDOR_CLASS_PREFIX) :].strip("\0 ")
    if ":" in rest:
        machine, _, arch = rest.partition(":")
        return OnieIdentity(vendor_machine=machine or None, arch=arch or None)
    if split_platform(rest):
        return complete(OnieIdentity(platform=rest))
    return OnieIdentity(vendor_machine=rest or None)


def encode_user_class(text: str = USER_CLASS) -> bytes:
    """Option 77 as an RFC 3004 list of one item: length byte, then the text."""
    raw = text.encode()
    if not 0 < len(raw) <= MAX_SUBOPTION_LEN:
        raise ValueError("a user class item is 1 to 255 bytes [RFC 3004 §4]")
    return bytes((len(raw),)) + raw


def parse_user_classes(raw: bytes) -> list[str]:
    """Option 77 items [RFC 3004 §4]; one plain string when the length prefixes do not add up
    (busybox `-x 77:` without a length byte, iPXE's `iPXE`). The one decoder: pxe.dhcp uses it too."""
    items: list[bytes] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            items = []
            break
        items.append(raw[i + 1 : i + 1 + n])
        i += 1 + n
    if not items and raw:
        items = [raw]
    return [item.decode("utf-8", "replace") for item in items]


def encode_client_id(serial: str) -> bytes:
    """Option 61 as ONIE sends it: type 0, then the serial number."""
    return bytes((CLIENT_ID_TYPE_OTHER,)) + serial.encode()


def parse_client_id(raw: bytes) -> str | None:
    """The serial number in an ONIE option 61 (type 0 + printable text), else None."""
    if len(raw) < 2 or raw[0] != CLIENT_ID_TYPE_OTHER:
        return None
    try:
        text = raw[1:].decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def encode_suboptions(items: Iterable[tuple[int, bytes]]) -> bytes:
    """ONIE's sub-option framing: 1-byte code, 1-byte length, value (functions `make_str_opt`)."""
    out = bytearray()
    for code, value in items:
        if len(value) > MAX_SUBOPTION_LEN:
            raise ValueError(f"ONIE sub-option {code} is {len(value)} bytes; at most 255 fit")
        out += bytes((code, len(value))) + value
    return bytes(out)


def parse_suboptions(raw: bytes) -> dict[int, bytes]:
    """code/length/value items; a truncated tail is ignored (ONIE's shell parser does the same).

    Generic: pxe.dhcp decodes option 82 sub-options [RFC 3046 §2.0] with it too (the one copy)."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(raw):
        code, n = raw[i], raw[i + 1]
        if i + 2 + n > len(raw):
            break
        out[code] = raw[i + 2 : i + 2 + n]
        i += 2 + n
    return out


def encode_vivso(enterprise: int, data: bytes) -> bytes:
    """One RFC 3925 §4 block: enterprise-number (4 bytes), data-len (1 byte), data."""
    if len(data) > MAX_SUBOPTION_LEN:
        raise ValueError(f"option 125 data for enterprise {enterprise} is {len(data)} bytes; at most 255")
    return struct.pack("!IB", enterprise, len(data)) + data


def parse_vivso(raw: bytes) -> dict[int, bytes]:
    """Option 125 → {enterprise: data}; blocks of one enterprise are concatenated [RFC 3925 §4]."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 5 <= len(raw):
        enterprise, n = struct.unpack_from("!IB", raw, i)
        if i + 5 + n > len(raw):
            break
        out[enterprise] = out.get(enterprise, b"") + raw[i + 5 : i + 5 + n]
        i += 5 + n
    return out


def encode_request_vivso(identity: OnieIdentity) -> bytes:
    """Option 125 as the switch sends it: enterprise 42623 with machine (3), arch (4), rev (5)."""
    ident = complete(identity)
    subs = [
        (SubOption.MACHINE, ident.vendor_machine or ""),
        (SubOption.ARCH, ident.arch or ""),
        (SubOption.MACHINE_REV, ident.revision or ""),
    ]
    return encode_vivso(ONIE_ENTERPRISE, encode_suboptions((int(c), v.encode()) for c, v in subs))


def request_options(identity: OnieIdentity) -> dict[int, bytes]:
    """The options of an ONIE DHCPDISCOVER/REQUEST, in the order ONIE's udhcpc writes them."""
    opts: dict[int, bytes] = {
        OPT_PARAM_REQUEST: bytes(PARAMETER_REQUEST_LIST),
        OPT_VENDOR_CLASS: encode_vendor_class(identity),
        OPT_USER_CLASS: encode_user_class(),
        OPT_VIVSO: encode_request_vivso(identity),
    }
    if identity.serial:
        opts[OPT_CLIENT_ID] = encode_client_id(identity.serial)
    return opts


def identity_from_dhcp(options: Mapping[int, bytes], mac: str | None = None) -> OnieIdentity | None:
    """An ONIE switch's identity from its DHCP options, or None when nothing says ONIE.

    Any one of option 60 `onie_vendor:…`, option 77 `onie_dhcp_user_class` or an option 125 block
    for enterprise 42623 is enough; each fills in what it carries.
    """
    found = False
    ident = OnieIdentity(mac=normalise_mac(mac) if mac else None)
    raw60 = options.get(OPT_VENDOR_CLASS)
    if raw60 is not None:
        parsed = parse_vendor_class(raw60.decode("utf-8", "replace"))
        if parsed is not None:
            found = True
            ident = _merge(ident, parsed)
    raw77 = options.get(OPT_USER_CLASS)
    if raw77 is not None and USER_CLASS in parse_user_classes(raw77):
        found = True
    raw125 = options.get(OPT_VIVSO)
    if raw125 is not None:
        data = parse_vivso(raw125).get(ONIE_ENTERPRISE)
        if data is not None:
            found = True
            subs = parse_suboptions(data)
            ident = _merge(
                ident,
                OnieIdentity(
                    vendor_machine=_text(subs.get(SubOption.MACHINE)),
                    arch=_text(subs.get(SubOption.ARCH)),
                    revision=_text(subs.get(SubOption.MACHINE_REV)),
                ),
            )
    if not found:
        return None
    raw61 = options.get(OPT_CLIENT_ID)
    if raw61 is not None:
        serial = parse_client_id(raw61)
        if serial:
            ident = replace(ident, serial=serial)
    return complete(ident)


def _text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace").strip("\0 ")
    return text or None


# ---------------------------------------------------------------------------------------------
# DHCP: what the server answers
# ---------------------------------------------------------------------------------------------


def encode_answer_vivso(installer_url: str | None, updater_url: str | None = None) -> bytes:
    """Option 125 for the switch: enterprise 42623, sub-option 1 installer URL (2 updater URL)."""
    subs: list[tuple[int, bytes]] = []
    if installer_url:
        subs.append((SubOption.INSTALLER_URL, installer_url.encode()))
    if updater_url:
        subs.append((SubOption.UPDATER_URL, updater_url.encode()))
    if not subs:
        raise ValueError("nothing to answer: give an installer or updater URL")
    data = encode_suboptions(subs)
    return encode_vivso(ONIE_ENTERPRISE, data)


def answer_options(installer_url: str, updater_url: str | None = None) -> dict[int, bytes]:
    """Options 114 and 125 for an exact installer URL (ONIE tries 125.1 first, then 114)."""
    return {
        OPT_DEFAULT_URL: installer_url.encode(),
        OPT_VIVSO: encode_answer_vivso(installer_url, updater_url),
    }


def urls_from_vivso(raw: bytes) -> dict[SubOption, str]:
    """The URLs (sub-options 1 and 2) of ONIE's block in an option 125 answer."""
    data = parse_vivso(raw).get(ONIE_ENTERPRISE)
    if data is None:
        return {}
    out: dict[SubOption, str] = {}
    for code, value in parse_suboptions(data).items():
        if code in (SubOption.INSTALLER_URL, SubOption.UPDATER_URL):
            out[SubOption(code)] = value.decode("utf-8", "replace")
    return out


def addresses(raw: bytes) -> list[str]:
    """An IP-list option (54, 72, 150): 4 bytes each. Anything else (a URL in 72) gives []."""
    if not raw or len(raw) % 4:
        return []
    return [str(ipaddress.IPv4Address(raw[i : i + 4])) for i in range(0, len(raw), 4)]


# ---------------------------------------------------------------------------------------------
# HTTP headers
# ---------------------------------------------------------------------------------------------

HEADER_SERIAL = "ONIE-SERIAL-NUMBER"
HEADER_ETH_ADDR = "ONIE-ETH-ADDR"
HEADER_VENDOR_ID = "ONIE-VENDOR-ID"
HEADER_MACHINE = "ONIE-MACHINE"
HEADER_MACHINE_REV = "ONIE-MACHINE-REV"
HEADER_ARCH = "ONIE-ARCH"
HEADER_SECURITY_KEY = "ONIE-SECURITY-KEY"
HEADER_OPERATION = "ONIE-OPERATION"
HEADER_VERSION = "ONIE-VERSION"

_HEADER_FIELDS = {
    HEADER_SERIAL: "serial",
    HEADER_ETH_ADDR: "mac",
    HEADER_VENDOR_ID: "vendor_id",
    HEADER_MACHINE: "vendor_machine",
    HEADER_MACHINE_REV: "revision",
    HEADER_ARCH: "arch",
    HEADER_OPERATION: "operation",
    HEADER_VERSION: "onie_version",
}


def request_headers(identity: OnieIdentity, security_key: str = "") -> dict[str, str]:
    """The headers ONIE's wget sends (exec_installer `wget_run`), in its order, User-Agent first.

    ONIE sends every header even when the value is empty; so do we.
    """
    ident = complete(identity)
    return {
        "User-Agent": user_agent(ident.onie_version),
        HEADER_SERIAL: ident.serial or "",
        HEADER_ETH_ADDR: ident.mac or "",
        HEADER_VENDOR_ID: ident.vendor_id or "",
        HEADER_MACHINE: ident.vendor_machine or "",
        HEADER_MACHINE_REV: ident.revision or "",
        HEADER_ARCH: ident.arch or "",
        HEADER_SECURITY_KEY: security_key,
        HEADER_OPERATION: ident.operation or Operation.INSTALL.value,
        HEADER_VERSION: ident.onie_version or "",
    }


def user_agent(
    onie_version: str | None, kernel: str = "Linux-5.10.0", busybox: str = "BusyBox-v1.36.1"
) -> str:
    """`onie/1.0 (<os><onie_version>; <busybox>)`: ONIE glues kernel and ONIE version together."""
    return f"onie/1.0 ({kernel}{onie_version or ''}; {busybox})"


def identity_from_headers(headers: Mapping[str, str]) -> OnieIdentity | None:
    """An identity from ONIE-* request headers (any case), or None when the client is not ONIE.

    A User-Agent starting with `onie/` alone is enough to say "ONIE", with nothing else known.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    values: dict[str, str] = {}
    for header, attr in _HEADER_FIELDS.items():
        value = lower.get(header.lower(), "").strip()
        if value:
            values[attr] = value
    is_onie = bool(values) or lower.get("user-agent", "").startswith(USER_AGENT_PREFIX)
    if not is_onie:
        return None
    if "mac" in values:
        values["mac"] = normalise_mac(values["mac"]) or values["mac"]
    return complete(OnieIdentity(**values))


__all__ = [
    "CLIENT_ID_TYPE_OTHER",
    "HEADER_ARCH",
    "HEADER_ETH_ADDR",
    "HEADER_MACHINE",
    "HEADER_MACHINE_REV",
    "HEADER_OPERATION",
    "HEADER_SECURITY_KEY",
    "HEADER_SERIAL",
    "HEADER_VENDOR_ID",
    "HEADER_VERSION",
    "IMAGE_SUFFIXES",
    "MAX_SUBOPTION_LEN",
    "NameKind",
    "ONIE_ENTERPRISE",
    "OPT_BOOTFILE",
    "OPT_BROADCAST",
    "OPT_CLIENT_ID",
    "OPT_DEFAULT_URL",
    "OPT_DNS",
    "OPT_DOMAIN",
    "OPT_HOSTNAME",
    "OPT_LOG_SERVER",
    "OPT_NTP",
    "OPT_PARAM_REQUEST",
    "OPT_ROUTER",
    "OPT_SERVER_ID",
    "OPT_SUBNET_MASK",
    "OPT_TFTP_SERVER",
    "OPT_TFTP_SERVER_IP",
    "OPT_USER_CLASS",
    "OPT_VENDOR_CLASS",
    "OPT_VENDOR_SPECIFIC",
    "OPT_VIVSO",
    "OPT_WWW_SERVER",
    "OnieIdentity",
    "Operation",
    "Place",
    "SubOption",
    "USER_AGENT_PREFIX",
    "USER_CLASS",
    "VENDOR_CLASS_PREFIX",
    "WaterfallEntry",
    "addresses",
    "answer_options",
    "complete",
    "default_names",
    "encode_answer_vivso",
    "encode_client_id",
    "encode_request_vivso",
    "encode_suboptions",
    "encode_user_class",
    "encode_vendor_class",
    "encode_vivso",
    "identity_from_dhcp",
    "identity_from_headers",
    "installer_file_name",
    "ip_hex",
    "mac_dir",
    "match_request",
    "merge",
    "normalise_mac",
    "normalise_path",
    "operation_of",
    "parse_client_id",
    "parse_suboptions",
    "parse_user_classes",
    "parse_vendor_class",
    "parse_vivso",
    "platform_from_name",
    "platform_name",
    "request_headers",
    "request_options",
    "split_platform",
    "tftp_waterfall",
    "urls_from_vivso",
    "user_agent",
]
