"""Slowing down password guessing without letting anyone lock a user out.

``RateLimiter`` is a sliding-window counter. ``LoginGuard`` is the policy built on it:

- per client address: failed logins and registrations, across every account (one address
  guessing many accounts, or registering in bulk);
- per (account, address): failed logins, so an address that keeps guessing one account is
  stopped, while the account's owner, elsewhere, is not;
- per account, from every address (the account's budget): once it is spent, the account is under
  attack and each address gets only a couple of guesses at it per window. A correct password from
  an address that has not failed still gets through, so filling the budget from a botnet denies
  nobody; the botnet, though, now pays a fresh address for every two guesses.

Kept in memory: with several nodes each counts on its own, so the effective limit is per node.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque

# Failed logins per address (at one account) allowed while that account's budget is spent.
UNDER_ATTACK_ALLOWANCE = 2
# The account's budget, and an address's (all accounts), as multiples of the per-pair limit.
ACCOUNT_FACTOR = 3
ADDRESS_FACTOR = 3


class RateLimiter:
    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def count(self, key: str) -> int:
        """Hits of ``key`` inside the window."""
        hits = self._hits.get(key)
        if not hits:
            return 0
        cutoff = time.monotonic() - self.window_s
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return len(hits)

    def retry_after(self, key: str, limit: int | None = None) -> float:
        """Seconds until ``key`` may try again (under ``limit``, default the limiter's); 0 if it
        may now."""
        limit = self.limit if limit is None else limit
        n = self.count(key)
        if n < limit:
            return 0.0
        hits = self._hits[key]
        # The hit whose expiry brings the count back under the limit.
        return hits[n - limit] + self.window_s - time.monotonic()

    def hit(self, key: str) -> None:
        if len(self._hits) >= self.max_keys:
            self._prune()
        self._hits.setdefault(key, deque()).append(time.monotonic())

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.window_s
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= cutoff]:
            del self._hits[key]


def address_key(address: str) -> str:
    """What an address is counted as: IPv6 by its /64 (one host can hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginGuard:
    """Who may try a password now: ``check`` before, ``failed``/``succeeded`` after."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.by_pair = RateLimiter(attempts, window_s)
        self.by_account = RateLimiter(attempts * ACCOUNT_FACTOR, window_s)
        self.by_address = RateLimiter(attempts * ADDRESS_FACTOR, window_s)

    @staticmethod
    def _pair(account: str, address: str) -> str:
        return f"{account}\0{address_key(address)}"

    def wait_login(self, account: str, address: str) -> float:
        """Seconds before ``address`` may try a password for ``account``; 0 if it may now."""
        pair = self._pair(account, address)
        wait = max(self.by_address.retry_after(address_key(address)),
                   self.by_pair.retry_after(pair))
        if self.by_account.retry_after(account) > 0:  # the account is under attack
            wait = max(wait, self.by_pair.retry_after(pair, UNDER_ATTACK_ALLOWANCE))
        return wait

    def wait_register(self, address: str) -> float:
        return self.by_address.retry_after(address_key(address))

    def failed(self, account: str, address: str) -> None:
        self.by_address.hit(address_key(address))
        self.by_pair.hit(self._pair(account, address))
        self.by_account.hit(account)

    def succeeded(self, account: str, address: str) -> None:
        # The account's budget is not reset: logging in during an attack must not hand the
        # attacker a fresh one.
        self.by_pair.reset(self._pair(account, address))

    def registered(self, address: str) -> None:
        self.by_address.hit(address_key(address))
