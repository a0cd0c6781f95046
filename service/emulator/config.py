"""The emulated notary service's fixed settings (what changes at run time is in ``Faults``)."""

from __future__ import annotations

from dataclasses import dataclass

from service.emulator.verdicts import DEFAULT_RULES, VerdictRule
from uploader.constants import CREDENTIAL_LIFETIME_SECONDS, DEFAULT_REGION


@dataclass(frozen=True)
class EmulatorConfig:
    bucket: str = "notary-submissions-prod"
    role_id: str = "AROAEMULATORNOTARYD01"
    region: str = DEFAULT_REGION
    credential_lifetime_seconds: float = CREDENTIAL_LIFETIME_SECONDS
    processing_delay_seconds: float = 2.0
    log_url_lifetime_seconds: float = 3 * 3600
    jwt_max_lifetime_seconds: float = 20 * 60
    jwt_lifetime_tolerance_seconds: float = 60.0
    clock_leeway_seconds: float = 60.0
    history_limit: int = 100
    hourly_request_limit: int | None = None  # per key id; None: unlimited
    inspect_uploads: bool = True  # hash the stored object and look for verdict markers
    rules: tuple[VerdictRule, ...] = DEFAULT_RULES
