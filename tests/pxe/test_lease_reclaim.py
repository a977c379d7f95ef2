"""The allocator once a pool is full of bindings (pxe/dhcp/leases.py, docs/netboot.md
"Allocation"): the heaps and counts that replaced its two walks of the pool must choose exactly
the address the walks chose, and must not cost O(pool) per DISCOVER."""

from __future__ import annotations

import random

import pytest

from pxe.dhcp.config import Reservation, Subnet
from pxe.dhcp.leases import Answer, Lease, LeaseEngine, LeaseState, MemoryLeaseStore, _Addresses, _Pool

# Two ranges out of address order: pool order is not address order, and ties must follow the
# pool's order as the walk did.
NET = Subnet(
    "198.18.0.0/24", pools=(("198.18.0.40", "198.18.0.47"), ("198.18.0.20", "198.18.0.27")), lease_time=12
)
NET2 = Subnet("198.18.1.0/24", pools=(("198.18.1.10", "198.18.1.13"),), lease_time=7)
IN_POOL = [f"198.18.0.{i}" for i in (*range(40, 48), *range(20, 28))]
RESERVATIONS = (
    Reservation(mac="52:54:00:00:00:03", ip="198.18.0.22"),  # inside the pool
    Reservation(mac="52:54:00:00:00:05", ip="198.18.0.5"),  # outside it
    # one MAC reserved twice (provision's config check refuses it; the engine takes it): offer()
    # gives it the last, _allocate may still meet the other inside the pool
    Reservation(mac="52:54:00:00:00:04", ip="198.18.0.23"),
    Reservation(mac="52:54:00:00:00:04", ip="198.18.0.6"),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WalkingEngine(LeaseEngine):
    """The reference: _allocate as it was before the heaps, two walks of the pool."""

    def _allocate(self, pool: _Pool, mac: str, requested: str | None, now: float) -> int | None:
        if requested is not None:
            want = int.from_bytes(bytes(map(int, requested.split("."))), "big")
            if want in pool.members and self._free_for(want, mac, now, reclaim=False):
                return want
        addresses = pool.addresses
        n = addresses.size
        for _ in range(n):
            ip = addresses.at(pool.cursor)
            pool.cursor = (pool.cursor + 1) % n
            if ip not in self.by_ip and ip not in self.reserved_ips:
                offered = self.offered_ips.get(ip)
                if offered is None or offered[1] <= now:
                    return ip
        return self._reclaim_walk(pool, mac, now)  # the old second walk, kept in leases.py as is


def mac(i: int) -> str:
    return f"52:54:00:00:00:{i:02x}"


def initial_leases(rng: random.Random) -> list[Lease]:
    """What a store may hold: expired, live, released (one with an expiry still ahead, as a
    store written by another server's clock may), declined, and a MAC with two bindings."""
    leases = []
    shadow, *others = rng.sample([ip for ip in IN_POOL if ip not in ("198.18.0.22", "198.18.0.23")], 12)
    for ip in others:
        state = rng.choice([LeaseState.BOUND, LeaseState.RELEASED, LeaseState.DECLINED])
        expires = 1000.0 + rng.choice([-30, -5, 0, 0, 4, 20, 60])
        leases.append(Lease(ip, mac(rng.randrange(9, 40)), state, expires, NET.network, updated=900.0))
    leases.append(Lease("198.18.1.11", mac(9), LeaseState.BOUND, 990.0, NET2.network, updated=901.0))
    # mac 8 holds two: its newer binding outside the pool (which offer() cannot give back), and
    # an older one inside, live, which only it may take
    leases.append(Lease(shadow, mac(8), LeaseState.BOUND, 1080.0, NET.network, updated=800.0))
    leases.append(Lease("198.18.0.100", mac(8), LeaseState.BOUND, 1090.0, NET.network, updated=850.0))
    return leases


def run(seed: int, steps: int = 1500) -> int:
    """One random sequence against both engines; returns how many offers fell to reclaiming."""
    rng = random.Random(seed)
    clock = Clock()
    stored = initial_leases(rng)
    engines = [
        cls(
            [NET, NET2],
            RESERVATIONS,
            MemoryLeaseStore(stored),
            offer_timeout=5,
            decline_quarantine=9,
            clock=clock,
        )
        for cls in (LeaseEngine, WalkingEngine)
    ]
    offered: dict[str, str] = {}
    reclaims = 0
    for step in range(steps):
        op = rng.random()
        who = mac(rng.randrange(40))
        subnet = NET2 if rng.random() < 0.15 else NET
        ip = offered.get(who) or rng.choice(IN_POOL)
        results: list[object]
        if op < 0.15:
            clock.now += rng.choice([0, 1, 1, 2, 3, 6, 13])
            continue
        if op < 0.2:  # _allocate itself: any MAC, reserved ones too, in any state
            pools = [e.pools[subnet.network] for e in engines]
            results = [e._allocate(p, who, None, clock.now) for e, p in zip(engines, pools, strict=True)]
            assert results[0] == results[1], f"seed {seed} step {step}: {results}"
            continue
        if op < 0.55:
            requested = rng.choice(IN_POOL) if rng.random() < 0.2 else None
            results = [e.offer(subnet, who, requested) for e in engines]
            if results[0] is not None:
                offered[who] = str(results[0])
                taken_from = engines[0].by_ip.get(_n(str(results[0])))
                reclaims += taken_from is not None and taken_from.mac != who
        elif op < 0.8:
            selecting = rng.random() < 0.8
            results = [e.request(subnet, who, ip, selecting=selecting) for e in engines]
        elif op < 0.87:
            results = [e.release(subnet, who, ip) for e in engines]
        elif op < 0.93:
            results = [e.decline(subnet, who, ip) for e in engines]
        elif op < 0.97:
            for e in engines:
                e.forget_offer(subnet, who)
            results = [None, None]
        else:
            results = [e.purge_offers() for e in engines]
        assert results[0] == results[1], f"seed {seed} step {step}: {results}"
        assert engines[0].by_ip == engines[1].by_ip, f"seed {seed} step {step}"
    return reclaims


def _n(ip: str) -> int:
    return int.from_bytes(bytes(map(int, ip.split("."))), "big")


@pytest.mark.parametrize("seed", range(8))
def test_the_heaps_choose_what_the_walks_chose(seed: int) -> None:
    assert run(seed) > 50  # the sequence does reach a full pool, often


class CountingEngine(LeaseEngine):
    """Counts the per-address test the walks made once per address of the pool."""

    free_for_calls = 0

    def _free_for(self, ip: int, mac: str, now: float, *, reclaim: bool) -> bool:
        self.free_for_calls += 1
        return super()._free_for(ip, mac, now, reclaim=reclaim)


BIG = Subnet("198.18.0.0/16", pools=(("198.18.0.1", "198.18.255.254"),), lease_time=600)


def full_of_expired(rng: random.Random) -> tuple[list[Lease], list[str]]:
    """A /16 pool whose every address holds a binding that has ended, in shuffled order of
    ending; returns the leases and the addresses oldest-ended first."""
    ips = [f"198.18.{i >> 8}.{i & 255}" for i in range(1, 65535)]
    ended = list(range(len(ips)))
    rng.shuffle(ended)
    leases = [
        Lease(ip, f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", LeaseState.BOUND, 100.0 + e, BIG.network)
        for i, (ip, e) in enumerate(zip(ips, ended, strict=True))
    ]
    return leases, [lease.ip for lease in sorted(leases, key=lambda lease: lease.expires)]


def test_a_full_pool_is_reclaimed_oldest_first_without_walking_it(monkeypatch: pytest.MonkeyPatch) -> None:
    leases, oldest_first = full_of_expired(random.Random(7))
    clock = Clock()
    clock.now = 1_000_000.0
    eng = CountingEngine([BIG], (), MemoryLeaseStore(leases), offer_timeout=30, clock=clock)
    steps = 0
    at = _Addresses.at

    def counted_at(self: _Addresses, i: int) -> int:
        nonlocal steps
        steps += 1
        return at(self, i)

    monkeypatch.setattr(_Addresses, "at", counted_at)
    got = [eng.offer(BIG, f"06:00:00:00:{i >> 8:02x}:{i & 255:02x}") for i in range(1000)]
    # each new MAC gets the binding that ended longest ago, the earlier ones being on offer
    assert got == oldest_first[:1000]
    # a walk of the pool is 65,534 steps; a DISCOVER here costs a handful
    assert steps < 10 * 1000 and eng.free_for_calls < 5 * 1000
    # the offers lapse unanswered: their addresses are the oldest again
    clock.now += 31
    assert eng.offer(BIG, "0a:00:00:00:00:01") == oldest_first[0]
    # one is taken: the next MAC gets the next one
    assert eng.request(BIG, "0a:00:00:00:00:01", oldest_first[0], selecting=True).ip == oldest_first[0]
    assert eng.offer(BIG, "0a:00:00:00:00:02") == oldest_first[1]


def test_an_exhausted_pool_answers_none_without_walking_it() -> None:
    clock = Clock()
    live = [
        Lease(
            f"198.18.{i >> 8}.{i & 255}",
            f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
            LeaseState.BOUND,
            5000.0 + i,
            BIG.network,
        )
        for i in range(1, 65535)
    ]
    eng = CountingEngine([BIG], (), MemoryLeaseStore(live), clock=clock)
    assert [eng.offer(BIG, f"06:00:00:00:00:{i:02x}") for i in range(200)] == [None] * 200
    assert eng.free_for_calls < 5 * 200
    clock.now = 5001.5  # the first binding ended
    assert eng.offer(BIG, "06:00:00:00:01:00") == "198.18.0.1"


def test_renewals_do_not_grow_the_heap() -> None:
    clock = Clock()
    eng = LeaseEngine([NET], (), MemoryLeaseStore(), clock=clock)
    clients = [mac(i) for i in range(10, 20)]
    ips = {m: eng.offer(NET, m) for m in clients}
    for m in clients:
        answer = eng.request(NET, m, str(ips[m]), selecting=True)
        assert answer.ip == ips[m]
    pool = eng.pools[NET.network]
    for _ in range(2000):
        clock.now += 1
        for m in clients:
            assert isinstance(eng.request(NET, m, str(ips[m]), selecting=False), Answer)
    assert len(pool.timed) + len(pool.released) <= 3 * len(clients) + 64  # 20,000 renewals


def both(*leases: Lease, clock: Clock) -> list[LeaseEngine]:
    return [cls([NET2], (), MemoryLeaseStore(leases), clock=clock) for cls in (LeaseEngine, WalkingEngine)]


def test_an_address_unbound_while_the_pool_was_dry_is_found_again() -> None:
    """The search found no never-used address (the last ones on offer); then a client moves
    (here to a fixed address its policy gave it) and its old address is never-used again."""
    clock = Clock()
    live = [Lease(f"198.18.1.{i}", mac(i), LeaseState.BOUND, 2000.0, NET2.network) for i in (10, 11)]
    for eng in both(*live, clock=clock):
        assert [eng.offer(NET2, mac(c)) for c in (30, 31, 32)] == ["198.18.1.12", "198.18.1.13", None]
        assert eng.offer(NET2, mac(11), fixed="198.18.1.200") == "198.18.1.200"
        assert eng.request(NET2, mac(11), "198.18.1.200", selecting=True, fixed="198.18.1.200").ip
        assert eng.offer(NET2, mac(32)) == "198.18.1.11"


def test_a_mac_gets_back_its_own_live_binding_that_is_not_its_current_one() -> None:
    """Its newer binding lies outside the pool (offer() cannot give it back); its older one,
    inside the pool and live, is free to it alone, before any other pool address."""
    clock = Clock()
    leases = [
        Lease("198.18.1.10", mac(1), LeaseState.BOUND, 1500.0, NET2.network, updated=1.0),
        Lease("198.18.1.11", mac(2), LeaseState.BOUND, 900.0, NET2.network, updated=1.0),
        Lease("198.18.1.12", mac(3), LeaseState.RELEASED, 950.0, NET2.network, updated=1.0),
        Lease("198.18.1.13", mac(4), LeaseState.BOUND, 1500.0, NET2.network, updated=1.0),
        Lease("198.18.1.99", mac(4), LeaseState.BOUND, 1600.0, NET2.network, updated=2.0),
    ]
    for eng in both(*leases, clock=clock):
        assert eng.offer(NET2, mac(1)) == "198.18.1.10"  # its current binding
        assert eng.offer(NET2, mac(5)) == "198.18.1.11"  # the first to have ended
        assert eng.offer(NET2, mac(6)) == "198.18.1.12"  # released
        assert eng.offer(NET2, mac(7)) is None
        assert eng.offer(NET2, mac(4)) == "198.18.1.13"  # its own, live
