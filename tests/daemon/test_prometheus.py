"""A real Prometheus server scrapes a real daemon (real pipeline, emulator) every second."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon
from tests.support.forward_proxy import ForwardProxyThread
from tests.support.waiting import until

MiB = 1024 * 1024
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    def __init__(self, root: Path, target_port: int, *, target_host: str = "127.0.0.1",
                 proxy_url: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: notaryd\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n"
            + (f"    proxy_url: {proxy_url}\n" if proxy_url else "")
            + f"    static_configs:\n      - targets: ['{target_host}:{target_port}']\n"
        )
        self.log_path = root / "prometheus.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
             "--web.listen-address=127.0.0.1:0"],
            stdout=self.log, stderr=self.log,
        )
        try:
            self.port = until(self._listening_port, within=30, what="prometheus listening",
                              detail=lambda: self.log_path.read_text()[-2000:])
            until(self._ready, within=30, what="prometheus ready")
        except AssertionError:
            self.stop()
            raise

    def _listening_port(self) -> int | None:
        """The port bound for ``:0``, from its "Listening on" log line."""
        assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
        found = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', self.log_path.read_text())
        return int(found.group(1)) if found else None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, endpoint: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            doc = json.load(response)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def scalar(self, query: str) -> float | None:
        result = self.api("query", query=query)
        return float(result[0]["value"][1]) if result else None

    def series(self, query: str, start: float, end: float) -> list[float]:
        result = self.api("query_range", query=query, start=start, end=end, step="1s")
        return [float(v) for _, v in result[0]["values"]] if result else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed: run `make system-deps` (Debian package prometheus)")
    started: list[Prometheus] = []

    def start(port: int, **options: Any) -> Prometheus:
        started.append(Prometheus(tmp_path / "prometheus", port, **options))
        return started[-1]

    yield start
    for p in started:
        p.stop()


@pytest.mark.slow
def test_prometheus_sees_bytes_and_job_states_move(real_daemon: Daemon, prometheus_for: Any) -> None:
    d = real_daemon
    d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(8 * MiB)  # 40 MiB: several scrapes (1 s apart) mid-upload
    d.start()
    prometheus = prometheus_for(d.port)
    until(lambda: prometheus.scalar('up{job="notaryd"}') == 1, within=20, what="prometheus scraped the daemon")

    start = time.time()
    size = 40 * MiB
    job = d.submit(d.archive("Scraped.zip", size), skip_preflight=True)

    def scraped_mid_upload() -> bool:  # one scrape that saw the job uploading, part of its bytes sent
        found = prometheus.api("query", query=(
            f'notaryd_upload_bytes_total > 0 < {size} and on() notaryd_jobs{{state="uploading"}} == 1'))
        return bool(found)

    until(scraped_mid_upload, within=60, what="a scrape in the middle of the upload", detail=d.log)
    assert d.wait_for(job["id"], "accepted", "failed", timeout=90)["state"] == "accepted"

    def scraped_the_end() -> float | None:  # the range's last step holds a scrape after the job
        end = time.time()
        accepted = prometheus.series('notaryd_jobs_finished_total{outcome="accepted"}', start, end)
        return end if accepted and accepted[-1] == 1 else None

    end = until(scraped_the_end, within=30, what="a scrape of the accepted job in the range")

    sent = prometheus.series("notaryd_upload_bytes_total", start, end)
    assert sent == sorted(sent), "a counter must never go down"
    assert sent[0] == 0 and sent[-1] == size
    uploading = prometheus.series('notaryd_jobs{state="uploading"}', start, end)
    accepted = prometheus.series('notaryd_jobs_finished_total{outcome="accepted"}', start, end)
    assert max(uploading) == 1 and uploading[-1] == 0
    assert accepted[0] == 0 and accepted[-1] == 1
    # the rate gauge moved with the bytes (how fast is for benchmarks/, not for this test)
    window = f"{int(end - start) + 2}s"
    assert (prometheus.scalar(f"max_over_time(notaryd_upload_rate_bytes_per_second[{window}])") or 0) > 0
    assert prometheus.scalar('sum(notaryd_job_duration_seconds_count{outcome="accepted"})') == 1


@pytest.mark.process
def test_prometheus_scrapes_a_daemon_by_its_dns_name(tmp_path: Path, prometheus_for: Any) -> None:
    """prometheus.yml's targets are DNS names; a daemon listening beyond loopback answers them
    on /metrics (a name mapped to 127.0.0.1 by the proxy Prometheus resolves through)."""
    name = "build-mac-1.example.internal"
    d = Daemon(tmp_path / "daemon", env={"NOTARYD_LISTEN": "0.0.0.0:0"})
    d.start()
    with ForwardProxyThread(hosts={name: "127.0.0.1"}) as dns:
        prometheus = prometheus_for(d.port, target_host=name, proxy_url=dns.url)
        until(lambda: prometheus.scalar('up{job="notaryd"}') is not None, within=20,
              what="a first scrape")
        assert prometheus.scalar('up{job="notaryd"}') == 1, d.log()[-2000:]
        assert prometheus.scalar('notaryd_build_info{job="notaryd"}') == 1
        scrapes = [p for p in dns.passages() if p.target == f"{name}:{d.port}"]
        assert scrapes and all(p.path == "/metrics" for p in scrapes)
