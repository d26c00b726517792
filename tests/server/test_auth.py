"""Accounts and tokens: register, login, logout, me; expired and revoked tokens; login rate limit."""

from __future__ import annotations

import time
import uuid

import httpx
from harness import Api

from server.helpers import assert_error

PASSWORD = "correct horse 1"


def email() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}@example.com"


def test_register_login_me_logout(api: Api) -> None:
    addr = email()
    r = api.post("/api/auth/register", json={"email": addr, "password": PASSWORD, "name": "Ann"})
    assert r.status_code == 201, r.text
    token, user = r.json()["token"], r.json()["user"]
    assert user == {"id": user["id"], "email": addr, "name": "Ann"}
    assert api.get("/api/auth/me", token=token).json() == {"user": user}

    # Login is case-insensitive on the email and gives a second, independent token.
    r = api.post("/api/auth/login", json={"email": addr.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    token2 = r.json()["token"]
    assert token2 != token and r.json()["user"] == user

    r = api.post("/api/auth/logout", token=token)
    assert r.status_code == 204 and r.content == b""
    assert_error(api.get("/api/auth/me", token=token), 401, "unauthorized")
    assert_error(api.post("/api/auth/logout", token=token), 401, "unauthorized")
    # Revoking one token leaves the other working.
    assert api.get("/api/auth/me", token=token2).json() == {"user": user}


def test_register_name_defaults_to_email_user(api: Api) -> None:
    addr = email()
    r = api.post("/api/auth/register", json={"email": addr, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["user"]["name"] == addr.split("@")[0]


def test_register_refuses_taken_email_in_any_case(api: Api) -> None:
    addr = email()
    assert api.post("/api/auth/register", json={"email": addr, "password": PASSWORD}).status_code == 201
    r = api.post("/api/auth/register", json={"email": addr.upper(), "password": PASSWORD})
    assert_error(r, 409, "email_taken")


def test_register_bad_input(api: Api) -> None:
    cases = [
        ({"password": PASSWORD}, "invalid_email"),
        ({"email": "not-an-email", "password": PASSWORD}, "invalid_email"),
        ({"email": 42, "password": PASSWORD}, "invalid_email"),
        ({"email": email()}, "invalid_password"),
        ({"email": email(), "password": "short"}, "invalid_password"),
        ({"email": email(), "password": ["x" * 10]}, "invalid_password"),
        ({"email": email(), "password": "x" * 1025}, "invalid_password"),
        ({"email": email(), "password": PASSWORD, "name": 7}, "invalid_name"),
        ({"email": email(), "password": PASSWORD, "name": "n" * 201}, "invalid_name"),
    ]
    for body, code in cases:
        assert_error(api.post("/api/auth/register", json=body), 400, code)
    assert_error(api.post("/api/auth/register", json=[1, 2]), 400, "invalid_body")
    assert_error(api.post("/api/auth/register", content=b"{nope",
                          headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert_error(api.post("/api/auth/register", content=b"email=a", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415)


def test_login_wrong_password_and_unknown_account(api: Api) -> None:
    token, user = api.register("login")
    assert_error(api.post("/api/auth/login", json={"email": user["email"], "password": "wrong pass"}),
                 401, "unauthorized")
    assert_error(api.post("/api/auth/login", json={"email": email(), "password": PASSWORD}),
                 401, "unauthorized")


def test_bad_tokens_are_refused(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"},
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        r = api.get("/api/auth/me", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_refused(server_factory) -> None:
    server = server_factory(args=["--token-ttl", "1"])
    api = Api(server.url)
    token, user = api.register("short")
    assert api.get("/api/auth/me", token=token).status_code == 200
    time.sleep(1.1)
    assert_error(api.get("/api/auth/me", token=token), 401, "unauthorized")
    assert_error(api.get("/api/projects", token=token), 401, "unauthorized")
    # Logging in again gives a fresh token.
    r = api.post("/api/auth/login", json={"email": user["email"], "password": "correct horse 1"})
    assert api.get("/api/auth/me", token=r.json()["token"]).status_code == 200


def test_login_rate_limit(server_factory) -> None:
    # A window long enough for three argon2 checks on a loaded machine.
    server = server_factory(args=["--login-attempts", "3", "--login-window", "6"])
    api = Api(server.url)
    _, user = api.register("limited")
    wrong = {"email": user["email"], "password": "wrong password"}
    for _ in range(3):
        assert_error(api.post("/api/auth/login", json=wrong), 401)
    # This address is locked out of the account now, even with the right password.
    for body in (wrong, {"email": user["email"], "password": PASSWORD}):
        r = api.post("/api/auth/login", json=body)
        err = assert_error(r, 429, "rate_limited")
        retry_after = int(r.headers["Retry-After"])
        assert 1 <= retry_after <= 7 and err["retry_after_s"] == retry_after
    # Another account from the same address is not locked by the first one's failures.
    _, other = api.register("other")
    assert api.post("/api/auth/login", json={"email": other["email"],
                                             "password": PASSWORD}).status_code == 200
    time.sleep(retry_after)
    assert api.post("/api/auth/login", json={"email": user["email"],
                                             "password": PASSWORD}).status_code == 200


def test_login_rate_limit_per_address(server_factory) -> None:
    """Guessing across many accounts from one address is limited too (3x the per-account limit)."""
    server = server_factory(args=["--login-attempts", "2"])
    api = Api(server.url)
    for i in range(6):
        assert_error(api.post("/api/auth/login", json={"email": f"{i}-{email()}",
                                                       "password": "wrong password"}), 401)
    r = api.post("/api/auth/login", json={"email": email(), "password": "wrong password"})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0


def from_address(url: str, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.0.0.x works on Linux loopback)."""
    return httpx.Client(base_url=url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def login(client: httpx.Client, user: dict, password: str, **headers: str) -> httpx.Response:
    return client.post("/api/auth/login", json={"email": user["email"], "password": password},
                       headers=headers)


def test_an_attacker_cannot_lock_the_owner_out(server_factory) -> None:
    """Failures from one address stop that address, not the account's owner elsewhere."""
    server = server_factory(args=["--login-attempts", "3", "--login-window", "60"])
    _, user = Api(server.url).register("target")
    with from_address(server.url, "127.0.0.2") as attacker:
        for _ in range(3):
            assert_error(login(attacker, user, "wrong password"), 401)
        for _ in range(5):
            assert_error(login(attacker, user, "wrong password"), 429, "rate_limited")
        # Even the right password: this address has spent its guesses at this account.
        assert_error(login(attacker, user, PASSWORD), 429, "rate_limited")
    for owner_address in ("127.0.0.3", "127.0.0.1"):
        with from_address(server.url, owner_address) as owner:
            r = login(owner, user, PASSWORD)
            assert r.status_code == 200, r.text
            assert owner.get("/api/auth/me", headers={
                "Authorization": f"Bearer {r.json()['token']}"}).status_code == 200


def test_an_account_under_attack_gives_each_address_two_guesses(server_factory) -> None:
    """Once the account's budget (3x the per-address limit) is spent by several addresses, a new
    address gets two wrong guesses, not the usual four; a correct password still gets through."""
    server = server_factory(args=["--login-attempts", "4", "--login-window", "60"])
    _, user = Api(server.url).register("botnet-target")
    for n in (2, 3, 4):
        with from_address(server.url, f"127.0.0.{n}") as bot:
            for _ in range(4):
                assert_error(login(bot, user, "wrong password"), 401)
            assert_error(login(bot, user, "wrong password"), 429, "rate_limited")
    with from_address(server.url, "127.0.0.5") as bot:
        for _ in range(2):
            assert_error(login(bot, user, "wrong password"), 401)
        r = login(bot, user, "wrong password")
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 61
    with from_address(server.url, "127.0.0.6") as owner:
        assert login(owner, user, PASSWORD).status_code == 200
        # A typo first is fine too: one failure is within the allowance.
        assert_error(login(owner, user, "typo password"), 401)
        assert login(owner, user, PASSWORD).status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy(server_factory) -> None:
    """X-Forwarded-For names the client only when the peer is a configured proxy; otherwise a
    guesser could dodge every limit by inventing a new address per request."""
    plain = server_factory(args=["--login-attempts", "2", "--login-window", "60"])
    _, user = Api(plain.url).register("spoofed")
    with from_address(plain.url, "127.0.0.2") as guesser:
        for n in range(2):
            assert_error(login(guesser, user, "wrong password", **{"X-Forwarded-For": f"10.0.0.{n}"}),
                         401)
        assert_error(login(guesser, user, "wrong password", **{"X-Forwarded-For": "10.0.0.9"}),
                     429, "rate_limited")

    proxied = server_factory(args=["--login-attempts", "2", "--login-window", "60",
                                   "--trusted-proxy", "127.0.0.2/32"])
    _, user = Api(proxied.url).register("behind-proxy")
    with from_address(proxied.url, "127.0.0.2") as proxy:
        for _ in range(2):
            assert_error(login(proxy, user, "wrong password", **{"X-Forwarded-For": "203.0.113.7"}),
                         401)
        assert_error(login(proxy, user, PASSWORD, **{"X-Forwarded-For": "203.0.113.7"}), 429)
        # Another client behind the same proxy, though it names the locked address first: the
        # entry the proxy appended (the rightmost) is the one that counts.
        r = login(proxy, user, PASSWORD, **{"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
        assert r.status_code == 200, r.text
    # A client that is not the proxy cannot use the header.
    with from_address(proxied.url, "127.0.0.3") as direct:
        for _ in range(2):
            assert_error(login(direct, user, "wrong password", **{"X-Forwarded-For": "192.0.2.1"}),
                         401)
        assert_error(login(direct, user, PASSWORD, **{"X-Forwarded-For": "192.0.2.2"}), 429)
