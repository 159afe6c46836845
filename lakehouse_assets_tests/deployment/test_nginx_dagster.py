"""nginx with basic auth (`deploy/nginx/dagster.conf`) in front of `dagster-webserver`, which
listens on 127.0.0.1 only: launching a run through GraphQL needs the password."""

import os
import socket

import pytest
import requests

from lakehouse_assets_tests.support.locked_deploy import dagster_webserver, htpasswd, nginx_proxy

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message }
  ... on InvalidSubsetError { message }
  ... on UnauthorizedError { message } } }
"""
PARAMS = {
    "selector": {
        "repositoryLocationName": "lakehouse_assets",
        "repositoryName": "__repository__",
        "jobName": "refresh_lakehouse",
    },
    "mode": "default",
}
RUN_QUERY = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx-dagster")
    password = "ui-" + os.urandom(8).hex()
    htpasswd(tmp / "dagster.htpasswd", "alice", password)
    with dagster_webserver(tmp) as webserver:
        with nginx_proxy(tmp, webserver.port, tmp / "dagster.htpasswd") as proxy:
            yield webserver, proxy, ("alice", password)


def graphql(url: str, query: str, variables: dict, auth=None) -> requests.Response:
    return requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, auth=auth, timeout=120
    )


def test_launching_a_run_without_credentials_is_refused(locked):
    _, proxy, (user, _) = locked
    assert graphql(proxy, LAUNCH_RUN, {"params": PARAMS}).status_code == 401
    assert graphql(proxy, LAUNCH_RUN, {"params": PARAMS}, (user, "wrong")).status_code == 401
    assert requests.get(proxy, timeout=30).status_code == 401  # the UI too


def test_with_credentials_a_run_is_launched(locked):
    _, proxy, credentials = locked
    answer = graphql(proxy, LAUNCH_RUN, {"params": PARAMS}, credentials)
    assert answer.status_code == 200, answer.text
    launched = answer.json()["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    # Queued (QueuedRunCoordinator: the daemon would start it); visible through the proxy.
    found = graphql(proxy, RUN_QUERY, {"id": run_id}, credentials).json()["data"]["runOrError"]
    assert found["__typename"] == "Run" and found["status"] in ("QUEUED", "STARTING", "STARTED")


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                    raw = bytes.fromhex(address)
                    if len(raw) == 4:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:  # four little-endian 32-bit words
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def other_addresses() -> set[str]:
    """This machine's IPv4 addresses other than loopback (`hostname -I`)."""
    import subprocess

    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout
    return {a for a in out.split() if "." in a and not a.startswith("127.")}


def test_the_webserver_listens_on_loopback_only(locked):
    webserver, _, _ = locked
    assert listening_addresses(webserver.port) == {"127.0.0.1"}
    for address in other_addresses():  # not reachable on any other address of this machine
        with socket.socket() as sock, pytest.raises(OSError):
            sock.settimeout(3)
            sock.connect((address, webserver.port))
