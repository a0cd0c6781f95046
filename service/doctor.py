"""`notaryd doctor`: set-up checks, each with the fix, against the endpoints in effect.

Checks, in order: the API key file (via ``uploader.notary.auth.load_api_key``: PKCS#8 P-256,
mode 0600, readable; plus the key id matching ``AuthKey_<KEYID>.p8``), the key id and issuer id
formats, reachability and TLS of the notary API (an unauthenticated GET: any HTTP answer means
the network and TLS work), the clock against that answer's ``Date`` header (a clock off by more
than a minute makes every JWT fail with 401), the S3 endpoints uploads will use (custom, or the
accelerated and the regional AWS ones), the ticket lookup, each through the proxy its traffic
takes (``uploader.proxies``; shown with its credentials hidden), the proxy settings in effect, and an
authenticated read (the submissions list) that tells a bad key from
a missing agreement from a network failure.

Every network call has a timeout; nothing here logs a token or a key. Every URL shown (endpoints,
proxies, URLs inside error texts) goes through ``uploader.redaction.redact_url``: a password or
token in its user-info or query (``ckAPIToken``) is never printed, in the text or the JSON.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from service.settings import Settings
from uploader.constants import DEFAULT_REGION
from uploader.proxies import proxy_for
from uploader.redaction import redact_url, redact_urls_in

ACCELERATED_S3 = "https://notary-submissions-prod.s3-accelerate.amazonaws.com"
REGIONAL_S3 = f"https://s3.{DEFAULT_REGION}.amazonaws.com"
MAX_SKEW_SECONDS = 60.0
TIMEOUT = aiohttp.ClientTimeout(total=15, connect=10)
_KEY_ID = re.compile(r"^[A-Z0-9]{10}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")

PASS, FAIL, INFO = "pass", "fail", "info"


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # pass | fail | info
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.result != FAIL

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class _Reach:
    status: int | None
    date: str | None
    problem: str  # "" when an HTTP answer came back
    route: str = "direct"  # or "via proxy URL", its credentials hidden


async def run_checks(settings: Settings, *, clock: Callable[[], float] = time.time,
                     environ: dict[str, str] | None = None) -> list[Check]:
    """``environ`` replaces the proxy settings in effect (the process environment)."""
    checks = list(await asyncio.to_thread(key_checks, settings))
    # Every endpoint takes the proxy its traffic takes (uploader.proxies), and says which.
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        api = await _reach(http, "GET", f"{settings.api_url}/submissions", environ)
        checks.append(_api_check(settings.api_url, api))
        checks.append(_clock_check(api, clock))
        for label, url in s3_endpoints(settings):
            reach = await _reach(http, "GET", url, environ)
            checks.append(_endpoint_check(f"S3 {label}", url, reach,
                                          "set NOTARYD_S3_ACCELERATE=0 if your network blocks "
                                          "the accelerated endpoint" if label == "accelerated"
                                          else "allow HTTPS to this host (firewall or proxy)"))
        lookup = await _reach(http, "POST", settings.ticket_url, environ,
                              json={"records": [{"recordName": "2/2/" + "0" * 40}]})
        checks.append(_endpoint_check("ticket lookup", settings.ticket_url, lookup,
                                      "allow HTTPS to the ticket lookup (NOTARYD_TICKET_URL)"))
    checks.append(proxy_check(dict(os.environ) if environ is None else environ))
    if all(c.ok for c in checks[:3]):
        checks.append(await _authenticated_read(settings, clock))
    else:
        checks.append(Check("authenticated read", FAIL, "skipped: fix the key checks first",
                            "fix the failures above, then run notaryd doctor again"))
    return checks


def key_checks(settings: Settings) -> list[Check]:
    from uploader.notary.auth import load_api_key
    from uploader.notary.errors import KeyFileError

    checks = []
    key_id, issuer = settings.key_id or "", settings.issuer_id or ""
    if settings.private_key is None:
        checks.append(Check("key file", FAIL, "NOTARYD_PRIVATE_KEY is not set",
                            "set NOTARYD_PRIVATE_KEY to the AuthKey_<KEYID>.p8 file from App "
                            "Store Connect > Users and Access > Integrations"))
    else:
        try:
            key = load_api_key(settings.private_key, key_id=key_id or "UNSET", issuer_id=issuer
                               or "unset")
        except KeyFileError as error:
            checks.append(Check("key file", FAIL, str(error)))  # the message holds the fix
        else:
            hint = key.mismatch_hint() if key_id else ""
            if hint:
                checks.append(Check("key file", FAIL, hint,
                                    "set NOTARYD_KEY_ID to the key id in the file's name, or "
                                    "point NOTARYD_PRIVATE_KEY at AuthKey_<NOTARYD_KEY_ID>.p8"))
            else:
                where = ("private to this user" if isinstance(settings.private_key, Path)
                         else "held in memory, never written to disk")
                checks.append(Check("key file", PASS,
                                    f"{settings.private_key.name}: PKCS#8 P-256, {where}"))
    if _KEY_ID.match(key_id):
        checks.append(Check("key id", PASS, key_id))
    else:
        checks.append(Check("key id", FAIL, f"{key_id or 'not set'}: not a 10-character Key ID",
                            "set NOTARYD_KEY_ID to the Key ID shown beside the team key"))
    if _UUID.match(issuer):
        checks.append(Check("issuer id", PASS, issuer))
    else:
        checks.append(Check("issuer id", FAIL, f"{issuer or 'not set'}: not a UUID",
                            "set NOTARYD_ISSUER_ID to the Issuer ID (a UUID) shown above the "
                            "team keys in App Store Connect"))
    return checks


def s3_endpoints(settings: Settings) -> list[tuple[str, str]]:
    """The S3 endpoints uploads will use with these settings."""
    if settings.s3_endpoint_url:
        return [("endpoint", settings.s3_endpoint_url)]
    if settings.s3_accelerate:
        return [("accelerated", ACCELERATED_S3), ("regional", REGIONAL_S3)]
    return [("regional", REGIONAL_S3)]


async def _reach(http: aiohttp.ClientSession, method: str, url: str,
                 environ: dict[str, str] | None, **kwargs: Any) -> _Reach:
    proxy = await asyncio.to_thread(proxy_for, url, environ)
    route = f"via proxy {redact_url(proxy)}" if proxy else "direct"
    try:
        async with http.request(method, url, allow_redirects=False, proxy=proxy,
                                **kwargs) as response:
            await response.content.read(64 * 1024)
            return _Reach(response.status, response.headers.get("Date"), "", route)
    except (aiohttp.ClientSSLError, ssl.SSLError) as error:
        return _Reach(None, None, f"TLS failed: {_short(error)}", route)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return _Reach(None, None, f"no connection: {_short(error)}", route)


def _short(error: BaseException) -> str:
    text = str(error) or error.__class__.__name__
    return redact_urls_in(text.splitlines()[0])[:200]


def _api_check(url: str, reach: _Reach) -> Check:
    url = redact_url(url)
    if reach.problem.startswith("TLS"):
        return Check("notary API", FAIL, f"{url}: {reach.problem} ({reach.route})",
                     "a TLS-inspecting proxy or missing CA certificates: install the proxy's CA "
                     "(SSL_CERT_FILE) or update the system certificates")
    if reach.problem:
        return Check("notary API", FAIL, f"{url}: {reach.problem} ({reach.route})",
                     "check the network, DNS and firewall, and NOTARYD_API_URL")
    return Check("notary API", PASS,
                 f"{url}: reachable (HTTP {reach.status} without a token), {reach.route}")


def _endpoint_check(name: str, url: str, reach: _Reach, fix: str) -> Check:
    url = redact_url(url)
    if reach.problem:
        return Check(name, FAIL, f"{url}: {reach.problem} ({reach.route})", fix)
    return Check(name, PASS, f"{url}: reachable (HTTP {reach.status}), {reach.route}")


def _clock_check(reach: _Reach, clock: Callable[[], float]) -> Check:
    parsed = email.utils.parsedate_to_datetime(reach.date) if reach.date else None
    if parsed is None:
        return Check("clock", FAIL, "the notary API gave no Date header to compare with",
                     "fix the notary API check first")
    skew = clock() - parsed.timestamp()
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check("clock", FAIL, f"this machine's clock is {abs(skew):.0f} s "
                     f"{'ahead of' if skew > 0 else 'behind'} the notary server; every token "
                     "will be refused (401)",
                     "synchronise the clock (macOS: sntp -sS time.apple.com; Linux: "
                     "timedatectl set-ntp true)")
    return Check("clock", PASS, f"within {abs(skew):.0f} s of the notary server")




def proxy_check(environ: dict[str, str]) -> Check:
    found = [f"{name}={redact_url(environ[name])}" for name in PROXY_VARIABLES
             if environ.get(name)]
    if not found:
        return Check("proxy", INFO, "no proxy variables set: connections go direct")
    return Check("proxy", INFO, "in effect for every endpoint (notary API, S3, ticket lookup, "
                 "log downloads, notifications): " + ", ".join(found))


async def _authenticated_read(settings: Settings, clock: Callable[[], float]) -> Check:
    from uploader.notary.auth import TokenSource, load_api_key
    from uploader.notary.client import NotaryClient
    from uploader.notary.errors import (
        AgreementMissing,
        MissingProvider,
        NotaryError,
        TransientNotaryError,
        Unauthenticated,
    )

    assert settings.private_key and settings.key_id and settings.issuer_id
    key = await asyncio.to_thread(load_api_key, settings.private_key, key_id=settings.key_id,
                                  issuer_id=settings.issuer_id)
    client = NotaryClient(settings.api_url, TokenSource(key, clock=clock))
    try:
        items = await client.history()
    except Unauthenticated:
        return Check("authenticated read", FAIL, "bad key: the notary service refused the token "
                     "(401)", "check that key id, issuer id and key file belong together and "
                     "the key is not revoked (App Store Connect > Integrations); check the clock")
    except (AgreementMissing, MissingProvider) as error:
        what = ("no provider for this team" if isinstance(error, MissingProvider)
                else "a required agreement is missing or has expired")
        return Check("authenticated read", FAIL, f"agreement missing: the notary service "
                     f"answered 403 ({what})",
                     "the Account Holder must accept the latest agreements in App Store Connect "
                     "(Business) or developer.apple.com/account")
    except TransientNotaryError as error:
        return Check("authenticated read", FAIL, f"network failure: {_short(error)}",
                     "check the network path to the notary API and try again")
    except NotaryError as error:
        return Check("authenticated read", FAIL, str(error))  # the message holds the fix
    finally:
        await client.close()
    return Check("authenticated read", PASS, f"submissions list readable ({len(items)} shown)")


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.result.upper():<4}  {c.name:<{width}}  {c.detail}")
        if c.result == FAIL and c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    failed = sum(1 for c in checks if not c.ok)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)
