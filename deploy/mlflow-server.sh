#!/usr/bin/env bash
# Start the team MLflow tracking server: PostgreSQL backend store, artifacts in an S3-compatible
# bucket (SeaweedFS, MinIO, AWS S3, ...), proxied by the server so that clients need no bucket
# credentials. Every setting comes from the environment (docs/deployment.md):
#
#   MLFLOW_PG_USERNAME, MLFLOW_PG_PASSWORD, MLFLOW_PG_HOST     backend store (required)
#   MLFLOW_PG_PORT (5432), MLFLOW_PG_DB (mlflow), MLFLOW_PG_SCHEME (postgresql+psycopg2)
#   MLFLOW_ARTIFACTS_DESTINATION   e.g. s3://mlflow/artifacts (required)
#   MLFLOW_S3_ENDPOINT_URL         the S3-compatible endpoint, e.g. http://seaweedfs:8333
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION   bucket credentials (boto3)
#   MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (2)
#   MLFLOW_ALLOWED_HOSTS           Host headers the server accepts, e.g. mlflow.internal:5000
#
# The password never appears on the command line or in a URL: the backend store URI has none,
# and libpq reads it from PGPASSWORD. psycopg2 as for Dagster: one PostgreSQL driver for both.
set -euo pipefail

: "${MLFLOW_PG_USERNAME:?set MLFLOW_PG_USERNAME}"
: "${MLFLOW_PG_PASSWORD:?set MLFLOW_PG_PASSWORD}"
: "${MLFLOW_PG_HOST:?set MLFLOW_PG_HOST}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. s3://mlflow/artifacts}"
case "$MLFLOW_ARTIFACTS_DESTINATION" in
    s3://*)
        : "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID for the artifact bucket}"
        : "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY for the artifact bucket}"
        ;;
esac

export PGPASSWORD="$MLFLOW_PG_PASSWORD"
unset MLFLOW_PG_PASSWORD
backend="${MLFLOW_PG_SCHEME:-postgresql+psycopg2}://${MLFLOW_PG_USERNAME}@${MLFLOW_PG_HOST}:${MLFLOW_PG_PORT:-5432}/${MLFLOW_PG_DB:-mlflow}"

args=(
    --backend-store-uri "$backend"
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
    --serve-artifacts
    --host "${MLFLOW_HOST:-0.0.0.0}"
    --port "${MLFLOW_PORT:-5000}"
    --workers "${MLFLOW_WORKERS:-2}"
)
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
fi
echo "mlflow-server: backend $backend, artifacts $MLFLOW_ARTIFACTS_DESTINATION" \
    "(endpoint ${MLFLOW_S3_ENDPOINT_URL:-AWS default})"
exec mlflow server "${args[@]}" "$@"
