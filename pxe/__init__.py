"""Network boot services (DHCP, proxyDHCP, TFTP, HTTP) on one asyncio loop.

Protocol front ends only translate: each turns a request into a `Client` and asks the one
policy `decide(client)` / `render(client, path)`; boot logic lives in the policy the caller hands
in. Imports `dhcp4` only: never `onie` or `provision`, never YAML or a database.
"""

from pxe.policy import BootDecision, Client, Event, EventSink, Policy, RenderedFile, Service

__all__ = ["BootDecision", "Client", "Event", "EventSink", "Policy", "RenderedFile", "Service"]
