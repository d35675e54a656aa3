#!/bin/sh
# Generates the development token keys once, on this machine, into git-ignored files
# (deploy/.gitignore): dev-keys/ for compose.yaml, k8s/overlays/dev/keys/ for the dev
# overlay. Existing keys are kept. Never commit them; production keys are created out
# of band (k8s/base/secret.template.yaml).
#   deploy/dev-keys.sh [DEPLOY_DIR]     (default: the folder of this script)
set -eu
dir="${1:-$(dirname "$0")}"
umask 077
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
for keys in "$dir/dev-keys" "$dir/k8s/overlays/dev/keys"; do
  mkdir -p "$keys"
  [ -s "$keys/access-token.env" ] || echo "LECTERN_JWT_SECRET=$(random_hex)" > "$keys/access-token.env"
  [ -s "$keys/playback-token.env" ] || echo "LECTERN_PLAYBACK_SECRET=$(random_hex)" > "$keys/playback-token.env"
done
echo "development keys in $dir/dev-keys and $dir/k8s/overlays/dev/keys"
