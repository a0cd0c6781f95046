"""notaryd's exit codes, in one place (the README's "Exit codes" table says the same).

| code | `notarize`, `submit --wait`, `wait` | `preflight` | `staple` |
|---|---|---|---|
| 0 | Accepted (or submitted with `--no-wait`) | clean | stapled / `--check`: stapled |
| 1 | any other failure, one line saying what to do; also Accepted but not stapled (the verdict stands, the line says "accepted, not stapled" and to run `notaryd staple`) | PATH could not be checked | not stapled |
| 2 | Invalid or Rejected, or preflight errors | errors found | — |
| 130 | interrupted (Ctrl-C); re-run to resume | | |
"""

from __future__ import annotations

ACCEPTED = 0
FAILURE = 1
REJECTED = 2
# The contract has three codes (0, 1, 2): a CI script tells this case from other failures by the
# line, and a re-run goes straight to stapling (the verdict is kept).
ACCEPTED_NOT_STAPLED = FAILURE
INTERRUPTED = 130
CLEAN = 0  # preflight: nothing the notary service rejects
ERRORS_FOUND = 2  # preflight: what the notary service would reject
