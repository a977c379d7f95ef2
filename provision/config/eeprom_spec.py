"""EEPROM spec files: a YAML description of a TlvInfo EEPROM, checked with file:line errors.

    product_name: ONIE_kvm_x86_64_Virtual_Machine
    serial_number: VM0001
    base_mac: 52:54:00:12:34:56
    manufacture_date: 11/28/2026 04:20:00
    platform_name: x86_64-kvm_x86_64-r0     # or `profile: kvm_x86_64` to take it from there
    vendor_extensions:
      - {iana: 42623, hex: "01 02 03"}

Keys are the snake_case names of onie.eeprom.TlvCode; records are written in file order.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from onie.eeprom import EepromError, Tlv, TlvCode, TlvInfo, VendorExtension
from provision.config import ConfigError, Field, Int, List, MacAddr, Mark, Obj, Section, Str, load_file
from provision.config.profiles import ProfileNotFound, ProfileRegistry
from provision.config.schema import Context

_TEXT = Str(allow_empty=False)

VENDOR_EXTENSION = Obj(
    {
        "iana": Field(Int(0, 0xFFFFFFFF), required=True, doc="IANA enterprise number"),
        "hex": Field(Str(r"(0x)?[0-9A-Fa-f\s:,]*", "hex bytes such as '01 02 ff'", allow_empty=True)),
        "text": Field(Str(allow_empty=True)),
    },
    name="vendor extension",
)

# YAML key → schema; every key but `profile` and `vendor_extensions` is a TlvCode key.
FIELDS: dict[str, Field] = {
    "profile": Field(Str(), doc="a hardware profile id: platform_name defaults to its onie_platform"),
    TlvCode.PRODUCT_NAME.key: Field(_TEXT),
    TlvCode.PART_NUMBER.key: Field(_TEXT),
    TlvCode.SERIAL_NUMBER.key: Field(_TEXT),
    TlvCode.BASE_MAC.key: Field(MacAddr()),
    TlvCode.MANUFACTURE_DATE.key: Field(
        Str(r"\d\d/\d\d/\d\d\d\d \d\d:\d\d:\d\d", "a date as MM/DD/YYYY hh:mm:ss (e.g. 11/28/2026 04:20:00)")
    ),
    TlvCode.DEVICE_VERSION.key: Field(Int(0, 255)),
    TlvCode.LABEL_REVISION.key: Field(_TEXT),
    TlvCode.PLATFORM_NAME.key: Field(_TEXT),
    TlvCode.ONIE_VERSION.key: Field(_TEXT),
    TlvCode.MAC_COUNT.key: Field(Int(0, 0xFFFF)),
    TlvCode.MANUFACTURER.key: Field(_TEXT),
    TlvCode.COUNTRY_CODE.key: Field(Str(r"[A-Z]{2}", "a 2-letter ISO 3166-1 country code such as US")),
    TlvCode.VENDOR.key: Field(_TEXT),
    TlvCode.DIAG_VERSION.key: Field(_TEXT),
    TlvCode.SERVICE_TAG.key: Field(_TEXT),
    "vendor_extensions": Field(List(VENDOR_EXTENSION), default_factory=list),
}
EEPROM_SPEC = Obj(FIELDS, name="eeprom spec")


def _extension(item: Section) -> VendorExtension:
    if (item["hex"] is None) == (item["text"] is None):
        raise item.error(None, "a vendor extension needs exactly one of hex: or text:", "write hex: '01 02'")
    if item["text"] is not None:
        return VendorExtension(item["iana"], item["text"].encode("utf-8"))
    digits = re.sub(r"[\s:,]", "", item["hex"])
    digits = digits[2:] if digits.lower().startswith("0x") else digits
    if len(digits) % 2:
        raise item.error("hex", f"{item['hex']!r} has an odd number of hex digits", "write whole bytes")
    return VendorExtension(item["iana"], bytes.fromhex(digits))


def spec_to_tlvinfo(data: Section, profile_platform: str | None = None) -> TlvInfo:
    """A validated spec → TlvInfo, in file order. EEPROM rule breaks become ConfigErrors."""
    tlvs: list[Tlv] = []
    keys = [k for k in data.key_marks if data.get(k) not in (None, [])]
    if profile_platform and TlvCode.PLATFORM_NAME.key not in keys:
        # The profile's platform takes the place where `profile:` stands in the file.
        keys = [TlvCode.PLATFORM_NAME.key if k == "profile" else k for k in keys]
        data[TlvCode.PLATFORM_NAME.key] = profile_platform
        data.key_marks[TlvCode.PLATFORM_NAME.key] = data.key_marks["profile"]
    for key in keys:
        if key == "profile":
            continue
        try:
            if key == "vendor_extensions":
                for item in data[key]:
                    tlvs.append(Tlv.of(TlvCode.VENDOR_EXTENSION, _extension(item)))
            else:
                tlvs.append(Tlv.of(TlvCode.from_key(key), data[key]))
        except EepromError as exc:
            raise data.error(key, exc.message, "see `provision eeprom encode --help`") from None
    info = TlvInfo(tuple(tlvs))
    try:
        info.encode()
    except EepromError as exc:
        raise data.error(None, exc.message, "shorten the values or drop vendor extensions") from None
    return info


def apply_overrides(data: Section, overrides: Iterable[str]) -> None:
    """`KEY=VALUE` strings (the CLI's --set) replace or add scalar keys, checked by the same
    schema: one spec per product, the serial number and MAC per device."""
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in FIELDS or key == "vendor_extensions":
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            raise ConfigError(
                None,
                f"--set {item!r}: expected KEY=VALUE with KEY one of the spec's scalar keys",
                f"did you mean {close[0]}?" if close else "e.g. --set serial_number=ABC123",
            )
        where = yaml.Mark("--set", 0, 0, 0, None, 0)
        node = yaml.ScalarNode("tag:yaml.org,2002:str", value, where, where)
        try:
            data[key] = FIELDS[key].schema.check(node, Context("--set"))
        except ConfigError as exc:
            raise ConfigError(None, f"--set {item!r}: {exc.message}", exc.fix) from None
        # Keep the key's place in the file (records are written in file order), but point later
        # errors about its value at the command line, not at the line it replaced.
        data.key_marks[key] = Mark("--set", 1, 1)


def load_eeprom_spec(path: Path | str, profiles=None, overrides: Iterable[str] = ()) -> TlvInfo:
    """Read an EEPROM spec file; `profiles` (a ProfileRegistry) resolves `profile:`;
    `overrides` are KEY=VALUE strings applied on top (see apply_overrides)."""
    data = load_file(path, EEPROM_SPEC)
    apply_overrides(data, overrides)
    platform = None
    if data["profile"]:
        registry = profiles or ProfileRegistry()
        try:
            profile = registry.get(data["profile"])
        except ProfileNotFound as exc:
            raise data.error("profile", str(exc)) from None
        platform = profile.onie_platform
        given = data[TlvCode.PLATFORM_NAME.key]
        if given and platform and given != platform:
            raise data.error(
                TlvCode.PLATFORM_NAME.key,
                f"platform_name {given!r} differs from profile {profile.id}'s {platform!r}",
                "drop platform_name (the profile supplies it) or fix it",
            )
        if not platform:
            raise data.error("profile", f"profile {profile.id!r} has no onie_platform", "set platform_name")
    return spec_to_tlvinfo(data, platform)


__all__ = ["EEPROM_SPEC", "ConfigError", "apply_overrides", "load_eeprom_spec", "spec_to_tlvinfo"]
