"""deploy/grafana/notaryd.json: an importable dashboard whose every query is valid PromQL
(promtool parses each as a recording rule) over contract metrics the daemon really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import ALLOWED_METRICS, CONTRACT_METRICS, DEPLOY, metric_names

DASHBOARD = DEPLOY / "grafana" / "notaryd.json"
# Grafana expands these before Prometheus sees the query; any valid stand-in will do.
TEMPLATE_STANDINS = {
    "$__rate_interval": "2m",
    "$__interval": "30s",
    "$__range": "6h",
    "$instance": ".*",
}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows nest theirs
    return [panel for panel in found if panel["type"] != "row"]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def substitute(expr: str) -> str:
    for variable, standin in TEMPLATE_STANDINS.items():
        expr = expr.replace(variable, standin)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def check_as_recording_rules(promtool: str, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # JSON is YAML: a rule file promtool parses, one recording rule per query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query_{i}", "expr": substitute(e)} for i, e in enumerate(exprs)],
            }
        ]
    }
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(json.dumps(rules))
    return subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.process
def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = expressions(load())
    result = check_as_recording_rules(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


@pytest.mark.process
def test_promql_check_rejects_a_broken_query(promtool: str, tmp_path: Path) -> None:
    result = check_as_recording_rules(promtool, ["sum by (instance (notaryd_jobs)"], tmp_path)
    assert result.returncode != 0


def test_queries_use_only_contract_metrics_the_daemon_exports(daemon_metric_names: set[str]) -> None:
    dashboard = load()
    used: set[str] = set()
    for expr in expressions(dashboard):
        used |= metric_names(expr)
    variable_query = next(v for v in dashboard["templating"]["list"] if v["name"] == "instance")
    used |= metric_names(re.sub(r"^label_values\((.*), instance\)$", r"\1", variable_query["definition"]))
    assert used <= ALLOWED_METRICS, f"not in the contract: {used - ALLOWED_METRICS}"
    assert used - {"up"} <= daemon_metric_names, f"not exported: {used - {'up'} - daemon_metric_names}"


def test_dashboard_covers_the_contract_metrics() -> None:
    used = set().union(*(metric_names(expr) for expr in expressions(load())))
    histogram_totals = {"notaryd_job_duration_seconds_sum", "notaryd_job_duration_seconds_count"}
    for name in sorted(CONTRACT_METRICS - histogram_totals):  # the histogram is shown by its buckets
        assert name in used, f"no panel shows {name}"


def test_datasource_and_instance_variables() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["definition"] == 'label_values(up{job="notaryd"}, instance)'
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            # every query follows the machine picker
            assert 'instance=~"$instance"' in target["expr"], target["expr"]


@pytest.mark.parametrize(
    "title",
    [
        "Upload throughput",
        "Bytes done vs total",
        "Part retries by reason",
        "Jobs by state",
        "Notary API requests by endpoint and code",
        "Oldest in-progress submission",
        "Credential expiry",
    ],
)
def test_required_panel_exists(title: str) -> None:
    assert title in {panel["title"] for panel in panels(load())}


def test_layout_is_well_formed() -> None:
    dashboard = load()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
