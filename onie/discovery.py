"""ONIE's discovery rules, both ways: recognise a switch on the wire and know every name it tries.

Pure functions over bytes, strings and `OnieIdentity`; no I/O. The name waterfall lives in
`onie.waterfall` and platform strings in `onie.platform`; both are re-exported here, so callers
need only `from onie import discovery`. Sources (ONIE's tree; summed up in docs/onie.md):
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
from collections.abc import Mapping
from dataclasses import replace

from dhcp4.options import (
    OPT_BOOTFILE,
    OPT_BROADCAST,
    OPT_CLIENT_ID,
    OPT_DEFAULT_URL,
    OPT_DNS,
    OPT_DOMAIN,
    OPT_HOSTNAME,
    OPT_LOG_SERVER,
    OPT_NTP,
    OPT_PARAM_REQUEST,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_TFTP_SERVER,
    OPT_TFTP_SERVER_ADDRESS,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    OPT_VIVSO,
    OPT_WWW_SERVER,
)
from dhcp4.tlv import (
    MAX_ITEM_LEN,
    encode_suboptions,
    encode_user_classes,
    encode_vivso,
    parse_suboptions,
    parse_user_classes,
    parse_vivso,
)
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

# Option 55 as ONIE sends it (docs/onie.md; udhcpc's defaults plus bin/discover's `-O` list). No 150.
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
MAX_SUBOPTION_LEN = MAX_ITEM_LEN  # 1-byte length in ONIE's sub-options and in RFC 3925's data-len


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
    return encode_user_classes([text])


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
    # Every PXE client of a DHCP server comes through here: nothing is built until something
    # says ONIE (bench/dhcp.py).
    raw60 = options.get(OPT_VENDOR_CLASS)
    from60 = parse_vendor_class(raw60.decode("utf-8", "replace")) if raw60 is not None else None
    raw77 = options.get(OPT_USER_CLASS)
    user_class = raw77 is not None and USER_CLASS in parse_user_classes(raw77)
    raw125 = options.get(OPT_VIVSO)
    data = parse_vivso(raw125).get(ONIE_ENTERPRISE) if raw125 is not None else None
    if from60 is None and not user_class and data is None:
        return None
    ident = OnieIdentity(mac=normalise_mac(mac) if mac else None)
    if from60 is not None:
        ident = _merge(ident, from60)
    if data is not None:
        subs = parse_suboptions(data)
        ident = _merge(
            ident,
            OnieIdentity(
                vendor_machine=_text(subs.get(SubOption.MACHINE)),
                arch=_text(subs.get(SubOption.ARCH)),
                revision=_text(subs.get(SubOption.MACHINE_REV)),
            ),
        )
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


# Option 125's data-len byte (255) minus the sub-option's code and length bytes.
ANSWER_URL_MAX = MAX_ITEM_LEN - 2


def answer_options(installer_url: str, updater_url: str | None = None) -> dict[int, bytes]:
    """Options 114 and 125 for an exact installer URL (ONIE tries 125.1 first, then 114).

    A URL longer than `ANSWER_URL_MAX` bytes cannot ride in option 125 (RFC 3925 has no
    continuation), so 114 alone carries it; option 114 itself is split by the codec [RFC 3396].
    """
    url = installer_url.encode()
    if len(url) > ANSWER_URL_MAX or (updater_url and len(url) + len(updater_url.encode()) + 4 > MAX_ITEM_LEN):
        return {OPT_DEFAULT_URL: url}
    return {OPT_DEFAULT_URL: url, OPT_VIVSO: encode_answer_vivso(installer_url, updater_url)}


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
    "ANSWER_URL_MAX",
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
    "OPT_TFTP_SERVER_ADDRESS",
    "OPT_USER_CLASS",
    "OPT_VENDOR_CLASS",
    "OPT_VENDOR_SPECIFIC",
    "OPT_VIVSO",
    "OPT_WWW_SERVER",
    "USER_AGENT_PREFIX",
    "USER_CLASS",
    "VENDOR_CLASS_PREFIX",
    "NameKind",
    "OnieIdentity",
    "Operation",
    "Place",
    "SubOption",
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
