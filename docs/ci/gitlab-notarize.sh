#!/usr/bin/env bash
# GitLab CI: notarise PATH with notaryd (see docs/ci.md for the .gitlab-ci.yml job).
#
# The team key arrives as a masked CI/CD variable, NOTARY_KEY_BASE64 (`base64 < AuthKey_X.p8`:
# masked variables must be one line), with NOTARYD_KEY_ID and NOTARYD_ISSUER_ID. It lives in a
# 0600 file for this script only: removed on any exit, a cancelled job included.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${NOTARY_KEY_BASE64:?set the masked CI/CD variable NOTARY_KEY_BASE64 to the output of: base64 < AuthKey_<KEYID>.p8}"
key_file="$(mktemp "${TMPDIR:-/tmp}/notaryd-key.XXXXXXXX")"
trap 'rm -f -- "$key_file"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
printf '%s' "$NOTARY_KEY_BASE64" | python3 -c '
import base64, binascii, sys
try:
    sys.stdout.buffer.write(base64.b64decode("".join(sys.stdin.read().split()), validate=True))
except (binascii.Error, ValueError):
    sys.exit("gitlab-notarize: NOTARY_KEY_BASE64 is not base64; set it to the output of: base64 < AuthKey_<KEYID>.p8")
' > "$key_file"
unset NOTARY_KEY_BASE64
NOTARYD_PRIVATE_KEY="$key_file" "$here/notaryd-ci.sh" "$@"
