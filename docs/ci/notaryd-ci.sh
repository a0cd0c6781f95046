#!/usr/bin/env bash
# notaryd in any CI: notarise PATH, leave the verdict for the next stages, exit like notaryd.
#
#   NOTARYD_PRIVATE_KEY=/path/AuthKey_X.p8 NOTARYD_KEY_ID=... NOTARYD_ISSUER_ID=... notaryd-ci.sh PATH
#
# Writes, in the current directory: notary-result.json (what `notaryd notarize --json` printed)
# and notary.env (NOTARY_STATUS, NOTARY_SUBMISSION_ID, NOTARY_LOG_PATH as KEY=value lines: a
# GitLab dotenv report, a Jenkins readProperties file). Prints the verdict and the grouped issues.
# Exit: 0 Accepted, 2 Invalid / Rejected / preflight errors, 1 anything else.
# NOTARYD_CI_ARGS adds options, e.g. "--no-staple --skip-preflight".
set -euo pipefail
artifact="${1:?usage: notaryd-ci.sh PATH (the .app, .zip, .pkg or .dmg to notarise)}"
: "${NOTARYD_PRIVATE_KEY:?NOTARYD_PRIVATE_KEY must name the key file}"
if ! command -v notaryd >/dev/null 2>&1; then
  pipx install "${NOTARYD_PIP_SPEC:?notaryd is not installed: set NOTARYD_PIP_SPEC to what pipx should install (a clone path or git URL)}"
  PATH="$(pipx environment --value PIPX_BIN_DIR):$PATH"
fi
code=0
# shellcheck disable=SC2086  # NOTARYD_CI_ARGS is a list of options
notaryd notarize "$artifact" --json ${NOTARYD_CI_ARGS:-} > notary-result.json || code=$?
python3 - notary-result.json "$code" "$artifact" > notary.env <<'PY'
import json, sys

try:
    result = json.load(open(sys.argv[1], encoding="utf-8"))
except ValueError:
    result = {}
if not isinstance(result, dict):
    result = {}
code = int(sys.argv[2])
status = result.get("status") or ("preflight-failed" if code == 2 else "error")
for name, value in (("NOTARY_STATUS", status), ("NOTARY_SUBMISSION_ID", result.get("submission_id")),
                    ("NOTARY_LOG_PATH", result.get("log_path"))):
    print(f"{name}={' '.join(str(value or '').split())}")  # one line each
report = result.get("report")
if report:
    print(report, file=sys.stderr)
print(f"notaryd-ci: {sys.argv[3]}: {status}", file=sys.stderr)
PY
exit "$code"
