"""DHCPv4 wire format: packets to and from bytes, option numbers, sub-option framings.

A leaf: imports nothing of this project, so `pxe` (servers) and `onie` (ONIE's discovery) share
one codec and one set of numbers.

    from dhcp4 import codec, options, tlv
    pkt = codec.decode(data)            # raises codec.DecodeError only
    pkt.options[options.OPT_VENDOR_CLASS]
    tlv.parse_suboptions(pkt.options[options.OPT_RELAY_AGENT])
"""

from dhcp4.codec import DecodeError, Packet, decode, encode
from dhcp4.options import MessageType

__all__ = ["DecodeError", "MessageType", "Packet", "decode", "encode"]
