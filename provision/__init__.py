"""provision: build ONIE installers, network-boot machines, drive their BMCs."""

__version__ = "0.1.0"
