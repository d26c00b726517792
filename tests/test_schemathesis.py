"""The OpenAPI document is exact: schemathesis, run with every check against a real server as a
project's owner, finds nothing.

What "exact" means here is in src/vidsync/server/openapi.py's docstring: a request the document
allows is accepted or refused for what the server holds (404, 409, 410, 413, 422, 429), a
request it forbids is refused, and every answer is documented, down to its error code. A new
route that is not described exactly fails this test with the route and the check named; the
lines under "FAILURES" say how to reproduce each finding (``curl ...``).

The run is bounded (examples per operation, no time budget) and deterministic, so it is
reproducible, and it takes well under a minute on a quiet machine. For a longer hunt by hand, see
docs/deployment.md ("Checking the API description").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Api

EXAMPLES = 6
# Refusals of a schema-valid request that depend on state or content the schema cannot see.
# (400 is not here: a well-formed request is never a 400.)
ACCEPTED = ["2xx", "401", "403", "404", "409", "410", "413", "422", "429"]


def st_config(email: str, password: str, project_id: str | None) -> str:
    """Log in as the owner (again after the run's own logout revokes the token), and point the
    project routes at a real project when ``project_id`` is given."""
    config: dict = {
        # Always as the owner: not as accounts the run registers on the way.
        "auth": {"auto-signup": False, "dynamic": {"openapi": {"bearer": {
            "path": "/api/auth/login", "payload": {"email": email, "password": password},
            "extract_selector": "/token"}}}},
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        # For each operation, the first entry that matches it applies.
        "operations": [
            # A long poll waits up to 60 s for an event that never comes: the run asks for none.
            {"include-path": "/api/projects/{project_id}/events",
             "parameters": {"path.project_id": project_id, "query.wait": 0}},
            {"include-path-regex": r"^/api/projects/\{project_id\}/",
             "parameters": {"path.project_id": project_id}},
            {"include-name": ["GET /api/projects/{project_id}", "PATCH /api/projects/{project_id}"],
             "parameters": {"path.project_id": project_id}},
        ],
    }
    if project_id is None:
        del config["operations"]
    return _toml(config)


def _toml(config: dict) -> str:
    """Just enough TOML for the config above (JSON strings are valid TOML basic strings)."""
    lines: list[str] = []

    def inline(value: object) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {inline(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(inline(v) for v in value) + "]"
        return json.dumps(value)

    for key, value in config.items():
        if key == "operations":
            for operation in value:
                lines.append("[[operations]]")
                lines += [f"{json.dumps(k)} = {inline(v)}" for k, v in operation.items()]
        else:
            lines.append(f"{json.dumps(key)} = {inline(value)}")
    return "\n".join(lines) + "\n"


def failures(output: str) -> str:
    """The FAILURES and ERRORS sections of schemathesis' report (each names the operation, the
    check and a curl command that reproduces it)."""
    start = min((i for i in (output.find("= FAILURES ="), output.find("= ERRORS =")) if i >= 0),
                default=0)
    return output[start:][:20000]


# Deleting a project would take the project every other operation is pointed at (schemathesis
# reuses identifiers it has seen): that operation gets a run of its own, last, with the project
# routes around it so that its stateful checks (use after free) have something to follow.
PROJECT_DELETE = "DELETE /api/projects/{project_id}"
PROJECT_ROUTES = r"^/api/projects(/\{project_id\})?$"


def schemathesis(url: str, config: Path, *selection: str) -> str:
    """Run schemathesis with every check; its report if it found anything, else ''."""
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
           f"{url}/api/openapi.json", "--checks", "all", "--generation-deterministic",
           "--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "10",
           "--no-color", "--output-truncate", "false", *selection]
    run = subprocess.run(cmd, cwd=config.parent, capture_output=True, text=True, timeout=240,
                         env={"PATH": "/usr/bin:/bin"})
    output = run.stdout + run.stderr
    if run.returncode != 0:
        return failures(output) or output[-5000:]
    assert " passed" in output, output[-3000:]
    return ""


@pytest.mark.timeout(400)
def test_schemathesis_finds_nothing(server_factory, tmp_path: Path, monkeypatch) -> None:
    # The run logs in and registers hundreds of times: argon2's real cost would be most of it.
    monkeypatch.setenv("VIDSYNC_TEST_CHEAP_HASHES", "1")
    server = server_factory(["--login-attempts", "100000"])
    api = Api(server.url)
    email, password = "owner-st@example.com", "correct horse 1"
    r = api.post("/api/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    project_id = api.project(r.json()["token"])
    config = tmp_path / "schemathesis.toml"
    config.write_text(st_config(email, password, project_id))
    found = schemathesis(server.url, config, "--exclude-name", PROJECT_DELETE)
    config.write_text(st_config(email, password, None))
    found += schemathesis(server.url, config, "--include-path-regex", PROJECT_ROUTES)
    assert not found, "schemathesis found the OpenAPI document inexact:\n" + found

    # Everything it sent was the client's mistake at worst: nothing the server logs as its own.
    server_errors = [line for line in server.log.splitlines() if '"level": "ERROR"' in line]
    assert server_errors == [], "\n".join(server_errors[:5])
