"""Network boot services (DHCP, proxyDHCP, TFTP, HTTP) on one asyncio loop.

Protocol front ends only translate: each turns a request into a `Client` and asks the one
policy `decide(client)`; boot logic lives in the policy the caller hands in. Never imports
`provision`, never reads YAML or the database.
"""

from pxe.policy import BootDecision, Client, Event, EventSink, Policy, Protocol, RenderedFile

__all__ = ["BootDecision", "Client", "Event", "EventSink", "Policy", "Protocol", "RenderedFile"]
