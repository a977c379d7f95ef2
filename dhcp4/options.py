"""DHCPv4 numbers with their sources [RFC 2131, RFC 2132 and the RFCs named], so that no bare number
appears in a codec, a server or a client."""

from __future__ import annotations

import enum

# BOOTP/DHCP fixed header [RFC 2131 §2, figure 1]
BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1  # [RFC 1700 "Hardware Type"]
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # [RFC 2131 §3, RFC 1497]
HEADER_LEN = 236  # fixed fields up to and including `file`
MIN_PACKET = 300  # BOOTP minimum; old relays and PXE ROMs drop shorter replies [RFC 1542 §2.1]
DEFAULT_MAX_SIZE = 576  # when the client sends no option 57 [RFC 2131 §2, RFC 2132 §9.10]
FLAG_BROADCAST = 0x8000  # [RFC 2131 §2, figure 2]

SERVER_PORT = 67
CLIENT_PORT = 68
PXE_PORT = 4011  # proxyDHCP/BINL second stage [Intel PXE 2.1 §2.2]

# Option codes [RFC 2132 unless said otherwise]
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_LOG_SERVER = 7
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_BROADCAST = 28
OPT_NTP = 42
OPT_VENDOR_SPECIFIC = 43  # PXE: sub-option 6 = discovery control [Intel PXE 2.1 §2.4]
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52  # never sent: PXE ROMs mishandle it (docs/netboot.md)
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_RENEWAL_T1 = 58
OPT_REBINDING_T2 = 59
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61  # echoed in replies [RFC 6842]
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_WWW_SERVER = 72  # an address list [RFC 2132 §8.9]
OPT_USER_CLASS = 77  # [RFC 3004]
OPT_TFTP_SERVER_ADDRESS = 150  # [RFC 5859]
OPT_RELAY_AGENT = 82  # [RFC 3046]
OPT_CLIENT_ARCH = 93  # [RFC 4578]
OPT_CLIENT_NDI = 94  # [RFC 4578]
OPT_CLIENT_UUID = 97  # [RFC 4578]
OPT_DEFAULT_URL = 114  # "default-url" [RFC 3679]
OPT_VIVSO = 125  # vendor-identifying vendor-specific information [RFC 3925 §4]
OPT_IPXE_ENCAP = 175  # iPXE's encapsulated options: present means iPXE [ipxe.org/cfg]
OPT_END = 255

# Option 82 sub-options [RFC 3046 §2.0; RFC 3527; RFC 5107]
RAI_CIRCUIT_ID = 1
RAI_REMOTE_ID = 2
RAI_LINK_SELECTION = 5  # RFC 3527: the subnet to allocate from when giaddr is not on it
RAI_SERVER_ID_OVERRIDE = 11  # RFC 5107

# PXE option 43 sub-option 6 "PXE_DISCOVERY_CONTROL" bit 3: use the bootfile in this offer,
# skip boot-server discovery (and therefore port 4011) [Intel PXE 2.1 table 2-1].
PXE_DISCOVERY_CONTROL = 6
PXE_DISCOVERY_USE_BOOTFILE = 0x08


# Option 93 client architecture types [RFC 4578 §2.1; IANA "Processor Architecture Types"].
# RFC 4578 swapped 7 and 9 (erratum 4624): x64 UEFI firmware sends either.
ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_X64 = 7
ARCH_EFI_BC = 9
ARCH_EFI_ARM32 = 10
ARCH_EFI_ARM64 = 11
ARCH_HTTP_X64 = 16
ARCH_HTTP_ARM64 = 19


class MessageType(enum.IntEnum):
    """Option 53 values [RFC 2132 §9.6]."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
