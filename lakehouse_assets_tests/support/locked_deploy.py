"""The locked-down deployment on loopback, from the files in `deploy/`: MLflow's basic-auth
server (`deploy/mlflow-auth-server.sh` + `deploy/mlflow_users.py`), `dagster-webserver` on
127.0.0.1 and nginx with basic auth in front of it (`deploy/nginx/dagster.conf`).

Every server runs in its own process group (`processes.server_process`), is waited for by
polling a URL, and is stopped (SIGTERM, then SIGKILL of the group) on exit, failure included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lakehouse_assets_tests.support.dagster_dev import dagster_dev
from lakehouse_assets_tests.support.processes import HOST, clean_env, free_port, server_process
from lakehouse_assets_tests.support.services import DEPLOY_DIR, deployed_mlflow_server


@dataclass(frozen=True)
class MlflowAuth:
    url: str
    admin_password: str
    pipeline: tuple[str, str]
    reader: tuple[str, str]


@contextlib.contextmanager
def mlflow_auth_server(tmp_dir: Path) -> Iterator[MlflowAuth]:
    """`deploy/mlflow-auth-server.sh` on sqlite in `tmp_dir`, then `deploy/mlflow_users.py`
    as the admin: user `pipeline` (EDIT on the experiment and model), user `reader`."""
    admin = "admin-" + os.urandom(8).hex()
    pipeline = ("pipeline", "pipe-" + os.urandom(8).hex())
    reader = ("reader", "read-" + os.urandom(8).hex())
    with deployed_mlflow_server(
        "mlflow-auth-server.sh",
        tmp_dir,
        MLFLOW_AUTH_ADMIN_PASSWORD=admin,
        MLFLOW_FLASK_SERVER_SECRET_KEY=os.urandom(16).hex(),
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_dir / 'mlflow.db'}",
    ) as url:
        users = subprocess.run(
            [sys.executable, str(DEPLOY_DIR / "mlflow_users.py"), url],
            env=clean_env(
                MLFLOW_TRACKING_USERNAME="admin",
                MLFLOW_TRACKING_PASSWORD=admin,
                MLFLOW_PIPELINE_USERNAME=pipeline[0],
                MLFLOW_PIPELINE_PASSWORD=pipeline[1],
                MLFLOW_READER_USERNAME=reader[0],
                MLFLOW_READER_PASSWORD=reader[1],
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert users.returncode == 0, users.stderr[-3000:]
        yield MlflowAuth(url, admin, pipeline, reader)


def dagster_webserver(tmp_dir: Path):
    """`dagster-webserver` alone on 127.0.0.1, otherwise as `dagster_dev` runs `dagster dev`."""
    return dagster_dev(tmp_dir, program=("dagster-webserver",))


def htpasswd(path: Path, user: str, password: str) -> None:
    """`htpasswd -B -c -i path user` (bcrypt), the password on stdin, never on a command line."""
    subprocess.run(
        ["htpasswd", "-B", "-c", "-i", str(path), user],
        input=password, text=True, check=True, capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def nginx_proxy(tmp_dir: Path, upstream_port: int, htpasswd_file: Path) -> Iterator[str]:
    """nginx (not as a daemon, as this user) with `deploy/nginx/dagster.conf`, its listen
    address, upstream and password file filled in; yields its URL."""
    prefix = tmp_dir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = (DEPLOY_DIR / "nginx" / "dagster.conf").read_text()
    site = (
        site.replace("listen 443 ssl;", f"listen {HOST}:{port};")
        .replace("127.0.0.1:3000", f"127.0.0.1:{upstream_port}")
        .replace("/etc/nginx/dagster.htpasswd", str(htpasswd_file))
    )
    site = "\n".join(line for line in site.splitlines() if "ssl_certificate" not in line)
    conf = prefix / "nginx.conf"
    conf.write_text(
        "daemon off;\nworker_processes 1;\n"
        # As root (CI), workers would switch to `nobody`, who cannot read the temp dir.
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'};\n"
        "events { worker_connections 64; }\nhttp {\n"
        f"  access_log {prefix / 'logs' / 'access.log'};\n"
        + "".join(
            f"  {kind}_temp_path {prefix / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + site
        + "\n}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    url = f"http://{HOST}:{port}"
    cmd = [nginx, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "logs" / "error.log")]
    with server_process("nginx", cmd, prefix / "nginx.log", url, env=clean_env(), cwd=prefix):
        yield url
