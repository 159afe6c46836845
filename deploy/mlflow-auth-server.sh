#!/usr/bin/env bash
# Start the MLflow tracking server with MLflow's basic-auth app: every request needs a user and
# password (401 without, 403 without permission). Secrets come from the environment only:
#
#   MLFLOW_AUTH_ADMIN_PASSWORD       password of `admin`, used when the user store is created
#   MLFLOW_FLASK_SERVER_SECRET_KEY   CSRF key of the UI's forms (the same on every server)
#   MLFLOW_AUTH_CONFIG_PATH          default: deploy/mlflow/basic_auth.ini (no secrets in it)
#
# Where runs and artifacts go:
#   MLFLOW_BACKEND_STORE_URI set: a single-host server on that store (e.g. sqlite:///mlflow.db),
#     artifacts proxied to MLFLOW_ARTIFACTS_DESTINATION (default ./artifacts), on MLFLOW_HOST
#     (127.0.0.1) : MLFLOW_PORT (5000). The tests run this mode.
#   unset: the team server of deploy/mlflow-server.sh (PostgreSQL + S3, its variables).
#
# Then create the pipeline's and the readers' users: deploy/mlflow_users.py.
# Needs `pip install 'mlflow[auth]'` (Flask-WTF), which the project's `deploy` extra installs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (password of the MLflow admin)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF key of the UI)}"
export MLFLOW_AUTH_CONFIG_PATH="${MLFLOW_AUTH_CONFIG_PATH:-$here/mlflow/basic_auth.ini}"

if [ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
    echo "mlflow-auth-server: basic-auth on ${MLFLOW_HOST:-127.0.0.1}:${MLFLOW_PORT:-5000}," \
        "config $MLFLOW_AUTH_CONFIG_PATH"
    exec mlflow server --app-name basic-auth \
        --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
        --serve-artifacts \
        --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./artifacts}" \
        --host "${MLFLOW_HOST:-127.0.0.1}" \
        --port "${MLFLOW_PORT:-5000}" \
        --workers "${MLFLOW_WORKERS:-1}" \
        "$@"
fi
exec "$here/mlflow-server.sh" --app-name basic-auth "$@"
