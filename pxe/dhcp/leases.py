"""The lease engine: which address a client gets, per RFC 2131 §4.3, with no I/O of its own.

Bindings are keyed on (subnet, chaddr), not on option 61: ONIE sends its serial number as client-id
and the NOS later sends another, which exhausted pools on servers keyed on client-id (docs/onie.md).

Allocation walks each pool with a cursor (Kea's "iterative" allocator) instead of hashing the MAC:
consecutive MACs of one rack then get consecutive addresses without colliding, where dnsmasq's
MAC hash made neighbours collide (docs/netboot.md). Offers are remembered in memory for
`offer_timeout` so concurrent clients never get the same address. Released and expired addresses
are reused only once no never-used address is left, so a returning client gets its old address.

Durability: every change goes to the `LeaseStore`; the server calls `store.commit()` before any
reply leaves, so an ACK is never sent for a lease a crash could lose.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, overload

from dhcp4.codec import ip_bytes, ip_str
from pxe.dhcp.config import Reservation, Subnet
from pxe.frozen import fast_init


class LeaseState(enum.Enum):
    BOUND = "bound"
    RELEASED = "released"  # freed by the client; the binding is kept for its next visit
    DECLINED = "declined"  # in quarantine until `expires` [RFC 2131 §4.3.3]


@fast_init  # built per DHCP packet: pxe/frozen.py
@dataclass(frozen=True)
class Lease:
    ip: str
    mac: str
    state: LeaseState
    expires: float  # unix time
    subnet: str  # the Subnet.network it belongs to
    hostname: str | None = None
    client_id: bytes | None = None
    updated: float = 0.0


class LeaseStoreError(Exception):
    """The store cannot answer now (its database is unreachable): the packet is dropped, the
    client retries, and pxe.dhcp.server logs it once a minute and counts it. A store raises
    it (or a subclass) from the calls the engine makes while handling a packet (claim, recall)."""


class LeaseStore(Protocol):
    """Where leases live across restarts (provision.store.sqlite.Store implements it on SQLite)."""

    def load_leases(self) -> Iterable[Lease]: ...

    def save_lease(self, lease: Lease) -> None:
        """Insert or replace the lease for `lease.ip`; may be buffered until commit()."""
        ...

    def delete_lease(self, ip: str) -> None: ...

    def commit(self) -> None:
        """Make everything saved so far durable. Called before replies are sent."""
        ...

    # Group commit (pxe.dhcp.server): a burst's replies that wrote a lease are held until one
    # transaction, run off the event loop, has made their leases durable.
    lease_writes: int  # lease writes so far (save, delete, claim): did this packet write one?

    def begin_commit(self) -> Callable[[], None] | None:
        """Take what is buffered (on the loop thread) and return the function that makes it
        durable in one transaction on another thread (a store may run the transaction's
        statements here and leave that function the commit); None: nothing to write, or the
        store cannot write off the loop (the server then calls commit())."""
        ...

    def abort_commit(self) -> None:
        """That function raised: put its rows back for the commit() that follows."""
        ...


class SharedLeaseStore(LeaseStore, Protocol):
    """A store several servers allocate from (provision.store.postgres). The engine uses these
    two when the store has them; a store one server owns (SQLite) has neither."""

    def claim(self, lease: Lease) -> Sequence[Lease]:
        """Durably make `lease.ip` this MAC's before the ACK: empty when done; else nothing was
        written and these are leases to learn: the live one of another MAC holding the address
        first, then others that other servers made since, so the next offers avoid them."""
        ...

    def recall(self, subnet: str, mac: str, *, exact: bool = True) -> Lease | None:
        """This MAC's binding on `subnet`, which another server may have made. `exact=False`: an
        answer a fraction of a second old will do (a DISCOVER: the claim at its REQUEST decides,
        so a stale answer costs the client its old address at worst, never a duplicate)."""
        ...


class MemoryLeaseStore:
    """A LeaseStore that forgets everything on exit: for library users and unit tests."""

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        self.leases: dict[str, Lease] = {lease.ip: lease for lease in leases}
        self.commits = 0
        self.lease_writes = 0

    def load_leases(self) -> Iterable[Lease]:
        return list(self.leases.values())

    def save_lease(self, lease: Lease) -> None:
        self.leases[lease.ip] = lease
        self.lease_writes += 1

    def delete_lease(self, ip: str) -> None:
        self.leases.pop(ip, None)
        self.lease_writes += 1

    def commit(self) -> None:
        self.commits += 1

    def begin_commit(self) -> Callable[[], None] | None:
        return None  # nothing to make durable: commit() at once

    def abort_commit(self) -> None:
        pass


_PURGE_AT = 4096  # outstanding offers before expired ones are swept
_HEAP_SLACK = 64  # stale entries a pool's reclaim heaps may always hold (else: up to 2x live ones)


class Outcome(enum.Enum):
    ACK = "ack"
    NAK = "nak"
    SILENT = "silent"


class Decline(enum.Enum):
    """What a DECLINE did; anything but QUARANTINED left the pool as it was."""

    QUARANTINED = "quarantined"
    NOT_ITS_LEASE = "sender holds no lease on that address"
    NOT_BOUND = "sender's lease on that address is not bound"
    OTHER_CLIENT_ID = "client-id differs from the lease's"
    RESERVED = "reserved address: not quarantined"


# Members by plain module names: `LeaseState.BOUND` is a metaclass lookup, eight times the cost
# of a global, and the engine tests states a dozen times per packet.
_BOUND, _RELEASED, _DECLINED = LeaseState.BOUND, LeaseState.RELEASED, LeaseState.DECLINED
_ACK, _NAK, _SILENT = Outcome.ACK, Outcome.NAK, Outcome.SILENT


@fast_init  # built per DHCP packet: pxe/frozen.py
@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    ip: str | None = None
    lease_time: int = 0
    reason: str = ""


class _Addresses(Sequence[int]):
    """A pool's addresses in order, computed from its ranges: a /8 or 0.0.0.0/0 pool costs a
    few integers, not a list and a set of every address (which was gigabytes)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.starts = list(itertools.accumulate((b - a + 1 for a, b in ranges), initial=0))
        self.size = self.starts[-1]
        self.first = ranges[0][0] if len(ranges) == 1 else None  # one range: position = ip - first

    def __len__(self) -> int:
        return self.size

    def at(self, i: int) -> int:
        """self[i] for 0 <= i < size, without the checks (the allocator's cursor is in range)."""
        if self.first is not None:
            return self.first + i
        r = bisect.bisect_right(self.starts, i) - 1
        return self.ranges[r][0] + i - self.starts[r]

    def position(self, ip: int) -> int:
        """The first i with self[i] == ip, for an address of the pool (ValueError otherwise)."""
        if self.first is not None and self.first <= ip <= self.ranges[0][1]:
            return ip - self.first
        for (a, b), start in zip(self.ranges, self.starts[:-1], strict=True):
            if a <= ip <= b:
                return start + ip - a
        raise ValueError(ip)

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i: int | slice) -> int | Sequence[int]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not 0 <= i < len(self):
            raise IndexError(i)
        r = bisect.bisect_right(self.starts, i) - 1
        return self.ranges[r][0] + i - self.starts[r]

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, int) and any(a <= ip <= b for a, b in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for a, b in self.ranges:
            yield from range(a, b + 1)


class _Pool:
    def __init__(self, subnet: Subnet) -> None:
        self.subnet = subnet
        self.net = subnet.net
        self.ranges = [(_int(a), _int(b)) for a, b in subnet.pools]
        self.addresses = _Addresses(self.ranges)
        self.members = self.addresses  # membership by range, in O(ranges)
        self.cursor = 0
        # What spares the allocator its walks of the pool once every address has been bound
        # (LeaseEngine._allocate; docs/netboot.md "Allocation"):
        self.reserved: set[int] = set()  # reserved addresses inside the pool
        self.reserved_of: dict[str, list[int]] = {}  # ... by the MAC they are reserved for
        self.taken = 0  # addresses of the pool that are bound (in by_ip) or reserved
        self.dry_until = 0.0  # a search for a never-bound address finds none before this time
        # Every binding of the pool by when it ended, as (expires, index in addresses), stale
        # entries dropped when met: RELEASED ones (reclaimable at once) apart from the others
        # (reclaimable once expired). An entry met while it is offered to someone else waits in
        # `parked` (address -> offer expiry) until that offer ends or is dropped.
        self.timed: list[tuple[float, int]] = []
        self.released: list[tuple[float, int]] = []
        self.parked: dict[int, float] = {}
        self.parked_heap: list[tuple[float, int]] = []
        self.stale = 0  # entries of timed and released that may be stale or repeated (at most)
        self.held: dict[str, int | list[int]] = {}  # MAC -> its unDECLINED bindings in the pool


def _int(ip: str) -> int:
    """Dotted quad to integer; ValueError for anything else (inet_aton alone accepts "1.2")."""
    if ip.count(".") != 3:
        raise ValueError(f"not an IPv4 address: {ip!r}")
    try:
        return int.from_bytes(ip_bytes(ip), "big")  # dhcp4's remembered inet_aton
    except OSError:
        raise ValueError(f"not an IPv4 address: {ip!r}") from None


def _str(ip: int) -> str:
    return ip_str(ip.to_bytes(4, "big"))  # remembered both ways: the OFFER and REQUEST hit it


class LeaseEngine:
    def __init__(
        self,
        subnets: Iterable[Subnet],
        reservations: Iterable[Reservation],
        store: LeaseStore,
        *,
        offer_timeout: float = 30.0,
        decline_quarantine: float = 600.0,
        authoritative: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pools = {s.network: _Pool(s) for s in subnets}
        self.store = store
        self.offer_timeout = offer_timeout
        self.decline_quarantine = decline_quarantine
        self.authoritative = authoritative
        self.clock = clock
        self.reserved_by_mac = {r.mac: r for r in reservations}
        self.reserved_ips = {_int(r.ip): r.mac for r in reservations}
        self.by_ip: dict[int, Lease] = {}
        self.by_mac: dict[tuple[str, str], Lease] = {}
        self.offers: dict[tuple[str, str], tuple[int, float]] = {}
        self.offered_ips: dict[int, tuple[str, float]] = {}
        self._purge_at = _PURGE_AT  # offers outstanding before the next sweep (offer())
        # Shared allocation (SharedLeaseStore): None for a store this server owns alone.
        self._claim: Callable[[Lease], Sequence[Lease]] | None = getattr(store, "claim", None)
        self._recall: Callable[..., Lease | None] | None = getattr(store, "recall", None)
        # The pools' address intervals, sorted, to find an address's pool by bisection. Subnets
        # that overlap (provision's config check refuses them) make an address belong to two
        # pools: then the allocator keeps its plain walks (`_fast` False), exact and O(pool).
        spans: list[tuple[int, int, _Pool]] = []
        for pool in self.pools.values():
            for a, b in sorted(pool.ranges):
                if spans and spans[-1][2] is pool and a <= spans[-1][1] + 1:
                    spans[-1] = (spans[-1][0], max(b, spans[-1][1]), pool)
                else:
                    spans.append((a, b, pool))
            for ip, owner in self.reserved_ips.items():
                if ip in pool.members:
                    pool.reserved.add(ip)
                    pool.reserved_of.setdefault(owner, []).append(ip)
            pool.taken = len(pool.reserved)
        spans.sort(key=lambda span: span[0])
        self._spans = spans
        self._span_starts = [a for a, _, _ in spans]
        nets = sorted(pool.subnet.bounds for pool in self.pools.values())
        self._fast = all(hi < lo for (_, hi), (lo, _) in itertools.pairwise(nets))
        # Offers copied in after construction (DhcpServer.reconfigure) may name an address under
        # a network it no longer belongs to; until they end, reclaiming walks (_allocate).
        self._copied_offers_checked = False
        self._copied_offers_until = 0.0
        for lease in store.load_leases():
            self._index(lease)

    # --- bookkeeping -------------------------------------------------------------------------
    def _index(self, lease: Lease, ip: int | None = None) -> None:
        """`ip`: lease.ip as an integer, when the caller has it already."""
        if ip is None:
            ip = _int(lease.ip)
        old = self.by_ip.get(ip)
        if old is not None and old.state is not _DECLINED:
            self.by_mac.pop((old.subnet, old.mac), None)
        self.by_ip[ip] = lease
        if self._fast:
            self._bound(ip, old, lease)
        if lease.state is not _DECLINED:
            key = (lease.subnet, lease.mac)
            prev = self.by_mac.get(key)
            if prev is None or prev.updated <= lease.updated:
                self.by_mac[key] = lease

    def _put(self, lease: Lease, ip: int | None = None) -> None:
        key = (lease.subnet, lease.mac)
        prev = self.by_mac.get(key)
        if prev is not None and prev.ip != lease.ip and lease.state is not _DECLINED:
            # The client moved to another address: its old binding is gone.
            self._unbind(_int(prev.ip))
            self.store.delete_lease(prev.ip)
        self._index(lease, ip)
        self.store.save_lease(lease)

    def _unbind(self, ip: int) -> None:
        old = self.by_ip.pop(ip, None)
        if old is None or not self._fast:
            return
        pool = self._pool_of(ip)
        if pool is None:
            return
        if ip not in pool.reserved:
            pool.taken -= 1
            pool.stale += 1
        pool.dry_until = 0.0  # a never-bound address again: the search may find it
        if old.state is not _DECLINED:
            self._unhold(pool, old.mac, ip)

    def _bound(self, ip: int, old: Lease | None, lease: Lease) -> None:
        """by_ip[ip] went from `old` to `lease`: the pool's counts, holders and heaps follow."""
        pool = self._pool_of(ip)
        if pool is None:
            return
        holds = lease.state is not _DECLINED
        if old is None:
            if ip not in pool.reserved:
                pool.taken += 1
        elif old.state is not _DECLINED:
            if holds and old.mac == lease.mac:  # a renewal: the holder stays
                holds = False
            else:
                self._unhold(pool, old.mac, ip)
        if holds:
            held = pool.held.get(lease.mac)
            if held is None:
                pool.held[lease.mac] = ip
            elif isinstance(held, int):
                pool.held[lease.mac] = [held, ip]
            else:
                held.append(ip)
        if ip not in pool.reserved:  # a reserved address is never reclaimed for another MAC
            first = pool.addresses.first  # per ACK: position() inlined
            pos = ip - first if first is not None else pool.addresses.position(ip)
            if old is not None:  # its old entry is stale now (every renewal leaves one)
                self._push(pool, lease, pos)
            else:  # a new binding (per ACK of a new client): _push inlined, nothing stale
                heap = pool.released if lease.state is _RELEASED else pool.timed
                heapq.heappush(heap, (lease.expires, pos))

    @staticmethod
    def _unhold(pool: _Pool, mac: str, ip: int) -> None:
        held = pool.held.get(mac)
        if held == ip:
            del pool.held[mac]
        elif isinstance(held, list) and ip in held:
            held.remove(ip)
            if len(held) == 1:
                pool.held[mac] = held[0]

    def _push(self, pool: _Pool, lease: Lease, pos: int) -> None:
        """An entry onto its heap, counted stale: a binding's new entry beside its old one, or a
        parked entry coming back (its binding may have pushed its own meanwhile)."""
        heapq.heappush(pool.released if lease.state is _RELEASED else pool.timed, (lease.expires, pos))
        pool.stale += 1
        if pool.stale > _HEAP_SLACK and 3 * pool.stale > 2 * (len(pool.timed) + len(pool.released)):
            self._compact(pool)

    def _compact(self, pool: _Pool) -> None:
        """Drop stale and repeated entries once they are 2/3 of the heaps: memory stays O(bindings),
        and the O(heaps) pass is paid for by the pushes that made them stale."""
        by_ip, at = self.by_ip, pool.addresses.at
        for heap, released in ((pool.timed, False), (pool.released, True)):
            live = set()
            for expires, pos in heap:
                lease = by_ip.get(at(pos))
                if lease is not None and lease.expires == expires and (lease.state is _RELEASED) is released:
                    live.add((expires, pos))
            heap[:] = live
            heapq.heapify(heap)
        pool.stale = 0

    def _pool_of(self, ip: int) -> _Pool | None:
        if len(self._spans) == 1:  # the usual one pool of one range: no bisection
            first, last, pool = self._spans[0]
            return pool if first <= ip <= last else None
        i = bisect.bisect_right(self._span_starts, ip) - 1
        if i >= 0:
            _, last, pool = self._spans[i]
            if ip <= last:  # spans are unions of overlapping or adjacent ranges: no gaps
                return pool
        return None

    def _drop_offer(self, key: tuple[str, str]) -> None:
        offer = self.offers.pop(key, None)
        if offer is not None:
            ip = offer[0]
            self.offered_ips.pop(ip, None)
            if self._fast and (pool := self._pool_of(ip)) is not None:
                if ip not in self.by_ip:
                    pool.dry_until = 0.0  # offered no more: the search may find it
                elif pool.parked.pop(ip, None) is not None:
                    self._push(pool, self.by_ip[ip], pool.addresses.position(ip))  # reclaimable again

    def subnet_for(self, ip: str) -> Subnet | None:
        addr = _int(ip)
        for pool in self.pools.values():
            if pool.subnet.contains(addr):
                return pool.subnet
        return None

    def lease_of(self, subnet: Subnet, mac: str) -> Lease | None:
        return self.by_mac.get((subnet.network, mac))

    def _recalled(self, key: tuple[str, str], *, exact: bool = True) -> Lease | None:
        """A shared store's binding of a MAC we hold none for (another server made it: a client
        of a server that died rebinding here keeps its address)."""
        if self._recall is None:
            return None
        lease = self._recall(*key, exact=exact)
        if lease is not None:
            self._index(lease)
        return lease

    def _free_for(self, ip: int, mac: str, now: float, *, reclaim: bool) -> bool:
        """May `mac` have `ip`? Never someone else's reservation, offer or live lease."""
        owner = self.reserved_ips.get(ip)
        if owner is not None and owner != mac:
            return False
        offered = self.offered_ips.get(ip)
        if offered is not None and offered[0] != mac and offered[1] > now:
            return False
        lease = self.by_ip.get(ip)
        if lease is None or (lease.mac == mac and lease.state is not _DECLINED):
            return True
        if lease.state is _DECLINED:
            return reclaim and lease.expires <= now
        return reclaim and (lease.state is _RELEASED or lease.expires <= now)

    def _allocate(self, pool: _Pool, mac: str, requested: str | None, now: float) -> int | None:
        if requested is not None:
            try:
                want: int | None = _int(requested)
            except ValueError:
                want = None
            if want is not None and want in pool.members and self._free_for(want, mac, now, reclaim=False):
                return want
        addresses = pool.addresses
        n = addresses.size
        # Never-used addresses first, from where the last search stopped. Skipped when it cannot
        # find one: every address bound or reserved (`taken`), or the last search found none
        # and nothing it skipped has been unbound or lost its offer since (`dry_until`). A full
        # search that finds nothing leaves the cursor where it was, so skipping it changes
        # nothing but the cost: a DISCOVER on a full pool walked all of it (docs/netboot.md).
        if not self._fast or (pool.taken < n and now >= pool.dry_until):
            by_ip, reserved, offered_ips = self.by_ip, self.reserved_ips, self.offered_ips
            soonest = math.inf  # the first of the offers the search skipped ends then
            for _ in range(n):
                ip = addresses.at(pool.cursor)
                pool.cursor = (pool.cursor + 1) % n
                if ip not in by_ip and ip not in reserved:
                    offered = offered_ips.get(ip)
                    if offered is None or offered[1] <= now:
                        return ip
                    if offered[1] < soonest:
                        soonest = offered[1]
            pool.dry_until = soonest
        # Pool full of bindings: reclaim the one that ended longest ago.
        if self._fast and self._reclaim_by_heap(now):
            return self._reclaim(pool, mac, now)
        return self._reclaim_walk(pool, mac, now)

    def _reclaim_walk(self, pool: _Pool, mac: str, now: float) -> int | None:
        """The reference: every address of the pool that `mac` may have, the one whose binding
        ended first (none: 0.0), the first in pool order among equals. O(pool)."""
        best: tuple[float, int] | None = None
        for ip in pool.addresses:
            if self._free_for(ip, mac, now, reclaim=True):
                lease = self.by_ip.get(ip)
                ended = lease.expires if lease is not None else 0.0
                if best is None or ended < best[0]:
                    best = (ended, ip)
        return None if best is None else best[1]

    def _reclaim_by_heap(self, now: float) -> bool:
        """May _reclaim answer for _reclaim_walk? Not while an offer copied in after construction
        (DhcpServer.reconfigure) names an address under another network than its pool's: _reclaim
        finds a MAC's own offer under the pool's network only."""
        if not self._copied_offers_checked:  # once: every later offer is made here
            self._copied_offers_checked = True
            for (net, _), (ip, expires) in self.offers.items():
                pool = self._pool_of(ip)
                if pool is not None and pool.subnet.network != net:
                    self._copied_offers_until = max(self._copied_offers_until, expires)
        return now >= self._copied_offers_until

    def _reclaim(self, pool: _Pool, mac: str, now: float) -> int | None:
        """_reclaim_walk's answer from the pool's heaps, in O(log pool) amortised, given that no
        never-used address is free (the search before it found none)."""
        by_ip, index = self.by_ip, pool.addresses.position
        parked, parked_heap = pool.parked, pool.parked_heap
        while parked_heap and parked_heap[0][0] <= now:  # offers that ended: reclaimable again
            until, ip = heapq.heappop(parked_heap)
            if parked.get(ip) == until:
                del parked[ip]
                if (lease := by_ip.get(ip)) is not None:
                    self._push(pool, lease, index(ip))
        best = self._first_free(pool, pool.released, True, mac, now)
        timed = self._first_free(pool, pool.timed, False, mac, now)
        if best is None or (timed is not None and timed < best):
            best = timed
        # Free to this MAC alone, wherever they sit in the heaps (or in none): its own bindings
        # (even live ones), its reservations, the address offered to it.
        mine: list[int] = list(pool.reserved_of.get(mac, ()))
        held = pool.held.get(mac)
        if held is not None:
            mine.extend((held,) if isinstance(held, int) else held)
        offer = self.offers.get((pool.subnet.network, mac))
        if offer is not None and offer[0] in pool.members:
            mine.append(offer[0])
        for ip in mine:
            if self._free_for(ip, mac, now, reclaim=True):
                lease = by_ip.get(ip)
                candidate = (lease.expires if lease is not None else 0.0, index(ip))
                if best is None or candidate < best:
                    best = candidate
        return None if best is None else pool.addresses.at(best[1])

    def _first_free(
        self, pool: _Pool, heap: list[tuple[float, int]], released: bool, mac: str, now: float
    ) -> tuple[float, int] | None:
        """The heap's first binding `mac` may take, left on the heap (the offer about to be made
        of it may lapse); stale entries are dropped, those offered to another MAC parked."""
        by_ip, offered_ips, at = self.by_ip, self.offered_ips, pool.addresses.at
        while heap:
            expires, pos = heap[0]
            ip = at(pos)
            lease = by_ip.get(ip)
            if lease is None or lease.expires != expires or (lease.state is _RELEASED) is not released:
                heapq.heappop(heap)  # stale: the binding changed and pushed its own entry
                if pool.stale:
                    pool.stale -= 1
                continue
            if not released and expires > now:
                return None  # live or in quarantine, and so is everything after it
            offered = offered_ips.get(ip)
            if offered is not None and offered[0] != mac and offered[1] > now:
                heapq.heappop(heap)
                pool.parked[ip] = offered[1]
                heapq.heappush(pool.parked_heap, (offered[1], ip))
                continue
            return expires, pos
        return None

    # --- RFC 2131 §4.3 -----------------------------------------------------------------------
    def offer(
        self, subnet: Subnet, mac: str, requested: str | None = None, fixed: str | None = None
    ) -> str | None:
        """DISCOVER: the address to offer (remembered for `offer_timeout`), or None (none free)."""
        now = self.clock()
        pool = self.pools[subnet.network]
        key = (subnet.network, mac)
        fixed = fixed or (r.ip if (r := self.reserved_by_mac.get(mac)) else None)
        ip: int | None
        if fixed is not None:
            ip = _int(fixed)
            if not subnet.contains(ip) or not self._free_for(ip, mac, now, reclaim=True):
                return None
        else:
            ip = None
            current = self.by_mac.get(key)
            if current is None and self._recall is not None:
                current = self._recalled(key, exact=False)
            if current is not None:
                cur = _int(current.ip)
                if cur in pool.members and self._free_for(cur, mac, now, reclaim=False):
                    ip = cur
            if ip is None:
                offered = self.offers.get(key)
                if offered is not None and self._free_for(offered[0], mac, now, reclaim=False):
                    ip = offered[0]
            if ip is None:
                ip = self._allocate(pool, mac, requested, now)
            if ip is None:
                return None
        assert ip is not None  # every branch above returned or chose one
        self._drop_offer(key)
        if len(self.offers) >= self._purge_at:
            # Amortised: the next sweep waits until the offers left (all live) have doubled. A
            # storm of DISCOVERs with thousands in flight swept every live offer per DISCOVER
            # (150 us each at 12,000); an expired offer left meanwhile blocks nothing (_free_for
            # and _allocate read the expiry).
            self.purge_offers(now)
            self._purge_at = max(_PURGE_AT, 2 * len(self.offers))
        expires = now + self.offer_timeout
        self.offers[key] = (ip, expires)
        self.offered_ips[ip] = (mac, expires)
        return _str(ip)

    def purge_offers(self, now: float | None = None) -> int:
        """Forget offers past their time (clients that took another server's offer silently)."""
        now = self.clock() if now is None else now
        stale = [key for key, (_, expires) in self.offers.items() if expires <= now]
        for key in stale:
            self._drop_offer(key)
        return len(stale)

    def pool_usage(self, subnet: Subnet) -> str:
        """Where a subnet's pool went, for the exhaustion warning (walks the pool: call rarely)."""
        now = self.clock()
        pool = self.pools[subnet.network]
        bound = declined = offered = reserved = 0
        for ip in pool.addresses:
            lease = self.by_ip.get(ip)
            if ip in self.reserved_ips:
                reserved += 1
            elif lease is not None and lease.state is _DECLINED and lease.expires > now:
                declined += 1
            elif lease is not None and lease.state is _BOUND and lease.expires > now:
                bound += 1
            elif (o := self.offered_ips.get(ip)) is not None and o[1] > now:
                offered += 1
        return (
            f"{len(pool.addresses)} addresses: {bound} leased, {offered} offered, {declined} declined,"
            f" {reserved} reserved"
        )

    def hostname_of(self, mac: str) -> str | None:
        """The hostname of the MAC's static reservation, if any."""
        r = self.reserved_by_mac.get(mac)
        return r.hostname if r is not None else None

    def forget_offer(self, subnet: Subnet, mac: str) -> None:
        """The client took another server's offer (foreign option 54): free ours."""
        self._drop_offer((subnet.network, mac))

    def request(
        self,
        subnet: Subnet,
        mac: str,
        ip: str,
        *,
        selecting: bool,
        fixed: str | None = None,
        lease_time: int | None = None,
        hostname: str | None = None,
        client_id: bytes | None = None,
    ) -> Answer:
        """REQUEST in any state. `ip` is option 50 (SELECTING, INIT-REBOOT) or ciaddr (RENEWING,
        REBINDING); `selecting` when option 54 named us.

        RFC 2131 §4.3.2 outside SELECTING: the wrong network, or a client whose notion of its
        address contradicts our record, gets a NAK; a client we have no record of gets silence
        ("MUST remain silent": another server may own it), so a blind REQUEST is never ACKed. A
        record is this client's binding (any state), its reservation or its outstanding offer.
        The one NAK without a record of the client: the address is live with someone else.
        """
        now = self.clock()
        key = (subnet.network, mac)
        pool = self.pools[subnet.network]
        try:
            want = _int(ip)
        except ValueError:
            return Answer(_NAK, reason=f"requested address {ip!r} is not an IPv4 address")
        if not subnet.contains(want):
            if not self.authoritative:
                return Answer(_SILENT, reason=f"{ip} is not on subnet {subnet.network}")
            return Answer(_NAK, reason=f"{ip} is not on subnet {subnet.network}")
        fixed = fixed or (r.ip if (r := self.reserved_by_mac.get(mac)) else None)
        if fixed is not None and fixed != ip:
            return Answer(_NAK, reason=f"{mac} is reserved {fixed}, asked for {ip}")
        offer = self.offers.get(key)
        current = self.by_mac.get(key)
        if current is None and offer is None:
            current = self._recalled(key)
        known = (
            fixed == ip
            or (offer is not None and offer[0] == want)
            or (current is not None and current.ip == ip)
        )
        if not known:
            if not selecting:
                if current is not None:  # our record says another address: its notion is wrong
                    return Answer(_NAK, reason=f"{mac} has {current.ip} here, not {ip}")
                if self.authoritative and self._live_elsewhere(want, mac, now):
                    return Answer(_NAK, reason=f"{ip} belongs to another client")
                return Answer(_SILENT, reason=f"no record of {mac} at {ip} (RFC 2131 4.3.2)")
            # SELECTING (option 54 named us) after our offer timed out: like a new DORA.
            if want not in pool.members:
                return Answer(_NAK, reason=f"{ip} is outside our pools")
        if not self._free_for(want, mac, now, reclaim=known):
            return Answer(_NAK, reason=f"{ip} belongs to another client")
        seconds = lease_time or subnet.lease_time
        self._drop_offer(key)
        # positional, in field order: ip mac state expires subnet hostname client_id updated
        lease = Lease(ip, mac, _BOUND, now + seconds, subnet.network, hostname, client_id, now)
        if self._claim is not None:
            learn = self._claim(lease)  # shared store: the address is ours, durably, or not at all
            if learn:
                for other in learn:  # other servers' clients: not offered from here again
                    self._index(other)
                return Answer(_NAK, reason=f"{ip} is held by {learn[0].mac} (shared lease store)")
        self._put(lease, want)
        return Answer(_ACK, ip=ip, lease_time=seconds)

    def _live_elsewhere(self, ip: int, mac: str, now: float) -> bool:
        """Is `ip` someone else's right now: reserved, offered or bound to another client?"""
        owner = self.reserved_ips.get(ip)
        if owner is not None and owner != mac:
            return True
        offered = self.offered_ips.get(ip)
        if offered is not None and offered[0] != mac and offered[1] > now:
            return True
        lease = self.by_ip.get(ip)
        return lease is not None and lease.mac != mac and lease.state is _BOUND and lease.expires > now

    def decline(self, subnet: Subnet, mac: str, ip: str, client_id: bytes | None = None) -> Decline:
        """DECLINE: the client found `ip` in use (ARP) [RFC 2131 §4.3.3]. Honoured only from the
        client that holds a bound lease on `ip` (same chaddr and the same option 61 as its lease):
        anyone else could otherwise quarantine the whole pool with one packet per address. A
        reserved address (or one outside the pools) is never quarantined: there is nothing else
        to give its device, so one packet would lock it out; the conflict is reported instead."""
        now = self.clock()
        try:
            addr = _int(ip)
        except ValueError:
            return Decline.NOT_ITS_LEASE
        key = (subnet.network, mac)
        lease = self.by_mac.get(key)
        if lease is None or lease.ip != ip or not subnet.contains(addr):
            return Decline.NOT_ITS_LEASE
        if lease.state is not _BOUND or lease.expires <= now:
            return Decline.NOT_BOUND
        if lease.client_id != client_id:
            return Decline.OTHER_CLIENT_ID
        if addr in self.reserved_ips or addr not in self.pools[subnet.network].members:
            return Decline.RESERVED
        self._drop_offer(key)
        del self.by_mac[key]
        quarantined = Lease(
            ip=ip, mac=mac, state=_DECLINED, expires=now + self.decline_quarantine,
            subnet=subnet.network, updated=now,
        )  # fmt: skip
        self._index(quarantined, addr)  # (its by_mac entry went above; a DECLINED lease has none)
        self.store.save_lease(quarantined)
        return Decline.QUARANTINED

    def release(self, subnet: Subnet, mac: str, ip: str) -> bool:
        """RELEASE: the address is free again, the binding is kept so the client gets it back."""
        now = self.clock()
        key = (subnet.network, mac)
        self._drop_offer(key)
        lease = self.by_mac.get(key)
        if lease is None or lease.ip != ip or lease.state is not _BOUND:
            return False
        self._put(replace(lease, state=_RELEASED, expires=now, updated=now))
        return True
