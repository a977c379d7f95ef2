"""Read-only TFTP server on asyncio [RFC 1350, 2347, 2348, 2349, 7440].

    from pxe.tftp import TftpConfig, start_tftp
    server = await start_tftp(TftpConfig(root=Path("/srv/tftp"), bind_addr="198.18.0.1"),
                              policy, events)
    ...
    server.close()

- Each transfer runs on its own ephemeral port (the RFC 1350 transfer ID) with its own
  retransmit timer; many run concurrently on one loop.
- Options: blksize 8..65464 (clamped to `Limits.max_blksize`), tsize, timeout 1..
  `Limits.max_timeout` (10; a larger one is declined, RFC 2349 allowing no lowering), windowsize
  (clamped to `Limits.max_windowsize`, 64). Invalid ones are left out of the OACK.
- Bounds (docs/netboot.md "Limits"): `TftpConfig.max_transfers` and `max_per_client`, checked
  before any work (ERROR 0 "server busy"; at the total cap a new source takes the slot of the
  oldest never-ACKed transfer), a lifetime per transfer (`Limits.lifetime` + size /
  `Limits.min_rate`), a lazy read-ahead. `server.stats` counts every bound reached; each is
  logged at most once a minute.
- Write requests are always refused (error 2): a boot server has nothing to accept.
- Before the file tree, `policy.render(Client(protocol=TFTP, ip=requester, path=name,
  mac=resolve_mac(ip) or ""), name)` is asked: RenderedFile content -> those bytes, path -> that
  file, not_found() -> error 1, None -> the file under `root` (confined by `pxe.files.resolve`).
- Events: tftp.request (path, port, op, mode, options); tftp.sent (path, bytes, seconds,
  blksize, windowsize, retransmits, confirmed: False when the last block went out but its ACK
  never came and the client fell silent or closed its port: atftp and tftpy do not dally);
  tftp.error (path, code, message, by=client|server, outcome, size_probe: True for EDK2's
  "ask tsize, then ERROR 8" probe).
- `path` is the name exactly as the client sent it (usually no leading '/'); `resolve_mac(ip)`
  (optional, e.g. a DHCP lease lookup) fills Client.mac, else it is "".
- Windows of more than one block go out with UDP GSO (one sendmsg per window) where the kernel
  allows; per packet otherwise.
"""

from pxe.tftp.server import TFTP_PORT, TftpConfig, TftpServer, start_tftp
from pxe.tftp.transfer import Limits

__all__ = ["TFTP_PORT", "Limits", "TftpConfig", "TftpServer", "start_tftp"]
