#!/usr/bin/env bash
# Install the system services that lakehouse_assets_tests/services.py starts: Debian's
# `postgresql` (15 on Debian 12, 17 on Debian 13) and `redis-server`, and `nginx` with
# `apache2-utils` (htpasswd) for lakehouse_assets_tests/locked_deploy.py. Idempotent: does
# nothing when all are present. Must run as root. Python packages (moto, boto3, psycopg2, celery,
# redis, dagster-postgres, dagster-celery, dagster-k8s) come from the project's extras.
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-services: postgresql, redis-server, nginx and htpasswd already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-services: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages from starting system-wide daemons
# (tests start their own servers on free loopback ports).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap 'if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The postgres server refuses to run as root; the package creates this user.
id postgres >/dev/null 2>&1 || { echo "install-services: no postgres user" >&2; exit 1; }
echo "install-services: done"
