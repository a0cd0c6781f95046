"""deploy/prometheus: promtool accepts the rules and their unit tests pass; the tests can fail;
every alert is tested; every metric the rules use is in the contract and exported by the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import ALLOWED_METRICS, DEPLOY, metric_names

pytestmark = pytest.mark.process

RULES = DEPLOY / "prometheus" / "notaryd.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "notaryd.rules.test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def alert_names(rules_text: str) -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", rules_text, flags=re.MULTILINE)


def rule_expressions(rules_text: str) -> list[str]:
    """The `expr:` of each rule, single-line or `|` block."""
    expressions = []
    for match in re.finditer(r"^(\s*)expr: ?(\|)?(.*)$", rules_text, flags=re.MULTILINE):
        indent, block, inline = match.groups()
        if not block:
            expressions.append(inline)
            continue
        body = []
        for line in rules_text[match.end() + 1 :].splitlines():
            if line.strip() and len(line) - len(line.lstrip()) <= len(indent):
                break
            body.append(line)
        expressions.append("\n".join(body))
    return expressions


def test_promtool_check_rules_accepts_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names(RULES.read_text()))} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_fail_when_an_alert_changes(promtool: str, tmp_path: Path) -> None:
    """Proves the unit tests pin behaviour: waiting 15 instead of 5 minutes breaks them."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    original = RULES.read_text()
    mutated = original.replace("expr: up{job=\"notaryd\"} == 0\n        for: 5m", "expr: up{job=\"notaryd\"} == 0\n        for: 15m")
    assert mutated != original
    (tmp_path / RULES.name).write_text(mutated)
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "NotarydDown" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = alert_names(RULES.read_text())
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert set(alerts) == tested, f"untested: {set(alerts) - tested}"
    for name in ("NotarydDown", "NotarydSubmissionStuck", "NotarydUploadStalled",
                 "NotarydRetryStorm", "NotarydCredentialsExpiringSoon"):
        assert name in alerts


def test_rules_use_only_contract_metrics_the_daemon_exports(daemon_metric_names: set[str]) -> None:
    expressions = rule_expressions(RULES.read_text())
    assert len(expressions) == len(alert_names(RULES.read_text()))
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used, "no metric found: the extraction is broken"
    assert used <= ALLOWED_METRICS, f"not in the contract: {used - ALLOWED_METRICS}"
    assert used - {"up"} <= daemon_metric_names, f"not exported: {used - {'up'} - daemon_metric_names}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (instance, job) (rate(notaryd_part_retries_total{reason="x"}[15m])) / '
        "(sum by (instance) (increase(notaryd_upload_bytes_total[1h] offset 5m)) / 1e9) > 10 "
        'and on (instance, job) histogram_quantile(0.9, sum by (le) (rate(foo_bucket[5m]))) and up{job="a b"} == 0'
    )
    assert metric_names(expr) == {
        "notaryd_part_retries_total", "notaryd_upload_bytes_total", "foo_bucket", "up"
    }


def test_example_scrape_config_is_valid_and_names_the_job_the_alerts_use(promtool: str, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    shutil.copy(SCRAPE_CONFIG, config)
    shutil.copy(RULES, tmp_path / RULES.name)  # rule_files are relative to the config
    result = run(promtool, "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\s*- job_name: notaryd\s*$", SCRAPE_CONFIG.read_text(), flags=re.MULTILINE)
