"""The live page in a real browser (headless chromium), the daemon running real jobs against
the notary emulator: the bar advances, the stage changes, the verdict and the grouped log report
appear; without login no job shows; a cross-site form post cannot cancel; the buttons work.

``NOTARYD_UPDATE_SCREENSHOTS=1`` also writes docs/live-page-running.png and
docs/live-page-finished.png (the README shows one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from service.emulator.config import EmulatorConfig
from service.emulator.faults import Faults
from service.emulator.notary import BackgroundEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.browser import StaticSite, chromium
from tests.support.daemon import Daemon
from tests.support.files import PART, make_archive
from tests.support.waiting import until

pytestmark = pytest.mark.process

DOCS = Path(__file__).resolve().parents[2] / "docs"
CARDS = """
return [...document.querySelectorAll('article.job')].map(card => ({
  id: card.dataset.jobId, state: card.dataset.state,
  value: card.querySelector('.bar').value, max: card.querySelector('.bar').max,
  verdict: card.querySelector('.verdict').textContent,
  issues: [...card.querySelectorAll('.issues li')].map(li => li.innerText),
  cancel: !card.querySelector('.cancel').hidden, resume: !card.querySelector('.resume').hidden,
}));
"""


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=1.5)  # "waiting" lasts long enough to be seen


def cards(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    return {card["id"]: card for card in driver.execute_script(CARDS)}


def log_in(driver: webdriver.Chrome, daemon: Daemon) -> None:
    opened = daemon.cli("open", "--no-browser")
    assert opened.returncode == 0, opened.stderr
    driver.get(opened.stdout.strip())
    until(lambda: driver.current_url == f"http://127.0.0.1:{daemon.port}/", within=10,
          what="the login link redirects to the page without its token")
    until(lambda: driver.find_element(By.ID, "jobs").is_displayed(), within=10, what="the jobs list")


def screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot))
    if os.environ.get("NOTARYD_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS / name)


def test_the_page_follows_real_jobs_to_their_verdicts(
    tmp_path: Path, real_daemon: Daemon
) -> None:
    # parts one at a time at 4 MiB/s: ~10 s of upload, a part done every ~1.3 s
    real_daemon.env.update(NOTARYD_BANDWIDTH_LIMIT=str(4 * 1024 * 1024), NOTARYD_CONCURRENCY="1")
    daemon = real_daemon.start()
    game = make_archive(daemon.archives / "Game.zip", 8 * PART)
    tool = make_archive(daemon.archives / "Tool.zip", PART // 2, marker=INVALID_MARKER)
    with chromium(tmp_path / "profile") as driver:
        log_in(driver, daemon)
        accepted = daemon.submit(game, skip_preflight=True)["id"]  # data, no code
        invalid = daemon.submit(tool, skip_preflight=True)["id"]

        seen: list[dict[str, Any]] = []
        running_shot = False

        def finished() -> bool:
            nonlocal running_shot
            now = cards(driver)
            if accepted in now:
                seen.append(now[accepted])
                card = now[accepted]
                if not running_shot and card["state"] == "uploading" and 0.3 < card["value"] / card["max"] < 0.7:
                    screenshot(driver, tmp_path, "live-page-running.png")
                    running_shot = True
            # the verdict shows while the log is still being fetched: wait for the job's end
            return (now.get(accepted, {}).get("state") == "accepted"
                    and bool(now.get(invalid, {}).get("verdict")) and bool(now[invalid]["issues"]))

        until(finished, within=180, what="both verdicts and the Invalid job's issues on the page",
              detail=lambda: daemon.log()[-3000:])
        screenshot(driver, tmp_path, "live-page-finished.png")
        final = cards(driver)

    uploading = [card["value"] for card in seen if card["state"] == "uploading"]
    between = sorted({value for value in uploading if 0 < value < seen[-1]["max"]})
    assert len(between) >= 2, f"the bar moved through {between} while uploading: {[(c['state'], c['value']) for c in seen][::5]}"
    assert uploading == sorted(uploading), "the bar never goes back"
    stages = [card["state"] for card in seen]
    assert {"uploading", "waiting"} <= set(stages) and stages[-1] == "accepted"
    assert stages.index("uploading") < stages.index("waiting")
    assert running_shot
    assert final[accepted]["verdict"] == "Accepted" and final[accepted]["value"] == final[accepted]["max"]
    assert final[invalid]["verdict"] == "Invalid"
    unsigned = [issue for issue in final[invalid]["issues"]
                if "not signed with a valid Developer ID certificate" in issue]
    assert len(unsigned) == 1, final[invalid]["issues"]  # one group for both architectures
    assert "[x86_64]" in unsigned[0] and "[arm64]" in unsigned[0]
    assert not final[accepted]["cancel"] and not final[accepted]["resume"]


def test_without_login_no_job_and_a_cross_site_post_cannot_cancel(
    tmp_path: Path, real_daemon: Daemon, notary: BackgroundEmulator
) -> None:
    notary.call(lambda e: setattr(e, "faults", Faults(stuck_next=1)))  # waits until cancelled
    daemon = real_daemon.start()
    job = daemon.submit(make_archive(daemon.archives / "Secret-Game.zip", PART),
                         skip_preflight=True)["id"]
    daemon.wait_for(job, "waiting")
    page = f"http://127.0.0.1:{daemon.port}/"
    attack = f"""<!doctype html><form id="f" method="POST"
      action="{page}v1/jobs/{job}/cancel"><input name="csrf_token" value="guess"></form>
      <script>document.getElementById('f').submit()</script>"""
    with chromium(tmp_path / "profile") as driver, StaticSite(attack) as attacker:
        driver.get(page)
        until(lambda: driver.find_element(By.ID, "login").is_displayed(), within=10,
              what="the login hint")
        assert driver.find_element(By.ID, "version").text.startswith("version ")
        assert not cards(driver)
        assert "Secret-Game" not in driver.page_source and job not in driver.page_source

        log_in(driver, daemon)
        until(lambda: cards(driver).get(job, {}).get("state") == "waiting", within=10,
              what="the job on the page once logged in")
        assert driver.get_cookies()[0]["httpOnly"] and driver.get_cookies()[0]["sameSite"] == "Strict"

        driver.get(f"http://127.0.0.1:{attacker.port}/")  # the cookie goes along: same site
        until(lambda: driver.current_url.startswith(page + "v1/"), within=10,
              what="the form post reaching the daemon")
        assert "cannot use the page's session" in driver.page_source
        assert daemon.job(job)["state"] == "waiting"

        driver.get(page)  # the page's own button, same origin with its CSRF token: it cancels
        until(lambda: cards(driver).get(job, {}).get("cancel"), within=10, what="the cancel button")
        driver.find_element(By.CSS_SELECTOR, f'article[data-job-id="{job}"] .cancel').click()
        until(lambda: cards(driver)[job]["state"] == "cancelled", within=30, what="the job cancelled")
        assert daemon.job(job)["state"] == "cancelled"

        driver.find_element(By.CSS_SELECTOR, f'article[data-job-id="{job}"] .resume').click()
        resumed = until(lambda: [i for i in cards(driver) if i != job], within=30,
                        what="the resumed job on the page")
        assert daemon.job(resumed[0])["path"] == daemon.job(job)["path"]
