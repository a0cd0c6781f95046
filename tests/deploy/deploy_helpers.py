"""Shared by the deploy/ checks: the metric contract and a PromQL metric-name extractor."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# CONTRACT.md's metrics, the histogram's series, Prometheus' own `up`, and the gauges the daemon
# adds on top of the contract (service/daemon/metrics.py).
CONTRACT_METRICS = frozenset(
    {
        "notaryd_upload_bytes_total",
        "notaryd_upload_resent_bytes_total",
        "notaryd_part_retries_total",
        "notaryd_upload_rate_bytes_per_second",
        "notaryd_jobs",
        "notaryd_notary_requests_total",
        "notaryd_job_duration_seconds_bucket",
        "notaryd_job_duration_seconds_sum",
        "notaryd_job_duration_seconds_count",
        "notaryd_oldest_in_progress_submission_seconds",
        "notaryd_credential_expiry_seconds",
        "notaryd_jobs_finished_total",
        "notaryd_last_success_timestamp_seconds",
    }
)
DAEMON_ADDITIONS = frozenset(
    {"notaryd_stuck_submissions", "notaryd_active_job_size_bytes", "notaryd_active_job_done_bytes"}
)
FLEET_METRICS = frozenset({"notaryd_queue_depth", "notaryd_fleet_workers"})  # issue 22, on PostgreSQL
ALLOWED_METRICS = CONTRACT_METRICS | DAEMON_ADDITIONS | FLEET_METRICS | {"up"}

_PROMQL_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without"})


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, labels or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, templates)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in _PROMQL_WORDS}
