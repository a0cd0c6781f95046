#!/usr/bin/env bash
# GitLab CI: notarise PATH with notaryd (see docs/ci.md for the .gitlab-ci.yml job).
#
# The team key arrives as a masked CI/CD variable, NOTARY_KEY_BASE64 (`base64 < AuthKey_X.p8`:
# masked variables must be one line), with NOTARYD_KEY_ID and NOTARYD_ISSUER_ID. notaryd reads
# the base64 from NOTARYD_PRIVATE_KEY itself and never writes the key to disk.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${NOTARY_KEY_BASE64:?set the masked CI/CD variable NOTARY_KEY_BASE64 to the output of: base64 < AuthKey_<KEYID>.p8}"
printf '%s' "$NOTARY_KEY_BASE64" | python3 -c '
import base64, binascii, sys
try:
    base64.b64decode("".join(sys.stdin.read().split()), validate=True)
except (binascii.Error, ValueError):
    sys.exit("gitlab-notarize: NOTARY_KEY_BASE64 is not base64; set it to the output of: base64 < AuthKey_<KEYID>.p8")
'
NOTARYD_PRIVATE_KEY="$NOTARY_KEY_BASE64" "$here/notaryd-ci.sh" "$@"
