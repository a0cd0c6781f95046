#!/usr/bin/env bash
# Jenkins: notarise PATH with notaryd (see docs/ci.md for the Jenkinsfile stage).
#
# withCredentials binds the team key as a secret file (NOTARYD_PRIVATE_KEY: its path) and the
# ids as secret text (NOTARYD_KEY_ID, NOTARYD_ISSUER_ID). notaryd refuses a key other users can
# read, and Jenkins does not promise the file's mode, so the key is copied into a 0600 file of
# this script's own, removed on any exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${NOTARYD_PRIVATE_KEY:?bind the key file: withCredentials([file(credentialsId: ..., variable: 'NOTARYD_PRIVATE_KEY')])}"
key_file="$(mktemp "${WORKSPACE_TMP:-${TMPDIR:-/tmp}}/notaryd-key.XXXXXXXX")"
trap 'rm -f -- "$key_file"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
cat -- "$NOTARYD_PRIVATE_KEY" > "$key_file"
NOTARYD_PRIVATE_KEY="$key_file" "$here/notaryd-ci.sh" "$@"
