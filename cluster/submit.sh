#!/usr/bin/env bash
# Submit the vidgen workflow to an existing Ray cluster.
#
#   RAY_ADDRESS=http://HEAD:8265 MLFLOW_TRACKING_URI=http://MLFLOW:5000 \
#     cluster/submit.sh --config workflows/configs/default.yaml \
#       --set data.source=s3://bucket/videos --workdir /mnt/shared/vidgen
#
# The work directory must be visible to every node (shared filesystem): shards,
# checkpoints and step outputs are written there. MLflow must be a server every
# node reaches (a SQLite file on one node is not).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://head:8265}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to an MLflow server every node can reach}"
exec ray job submit \
  --address "$RAY_ADDRESS" \
  --runtime-env cluster/runtime_env.yaml \
  --runtime-env-json "{\"env_vars\": {\"MLFLOW_TRACKING_URI\": \"$MLFLOW_TRACKING_URI\"}}" \
  -- vidgen run "$@"
