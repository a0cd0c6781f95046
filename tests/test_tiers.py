"""The tier guard (tests/support/tiers.py, wired in by tests/conftest.py) fails a test whose tier
lies, and only such a test: a small suite run by a real pytest child process with the suite's own
hooks, and its outcome read test by test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.process  # the guarded suite runs in a pytest child process

REPO = Path(__file__).resolve().parents[1]

GUARDED_SUITE = '''
import socket
import subprocess
import sys

import pytest


def bind_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))


def start_child():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_unit_opening_a_socket():
    bind_loopback()


def test_unit_starting_a_child():
    start_child()


def test_unit_using_a_unix_socket():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("")  # autobind: not a network socket


@pytest.mark.integration
def test_integration_opening_a_socket():
    bind_loopback()


@pytest.mark.integration
def test_integration_starting_a_child():
    start_child()


def test_integration_by_its_fixture(seaweed):
    bind_loopback()


@pytest.mark.process
def test_process_starting_a_child():
    start_child()
'''

# The suite's hooks, not a copy; the stand-in `seaweed` makes a test integration by its name.
GUARDED_CONFTEST = '''
import pytest

from tests.conftest import pytest_addoption, pytest_collection_modifyitems, pytest_runtest_call


@pytest.fixture
def seaweed():
    return None
'''


def test_the_tier_guard_fails_exactly_the_tests_whose_tier_lies(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(GUARDED_CONFTEST)
    pytester.makepyfile(test_guarded=GUARDED_SUITE)
    pytester.makeini(f"[pytest]\npythonpath = {REPO}\nmarkers =\n    unit\n    integration\n    process\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-rA", "-vv")

    outcomes = {name: outcome for outcome, name in re.findall(
        r"^(PASSED|FAILED) test_guarded\.py::(\w+)", result.stdout.str(), re.MULTILINE)}
    assert outcomes == {
        "test_unit_opening_a_socket": "FAILED",
        "test_unit_starting_a_child": "FAILED",
        "test_unit_using_a_unix_socket": "PASSED",
        "test_integration_opening_a_socket": "PASSED",
        "test_integration_starting_a_child": "FAILED",
        "test_integration_by_its_fixture": "PASSED",
        "test_process_starting_a_child": "PASSED",
    }, result.stdout.str()
    # each failure names what the test did and the marker it needs
    result.stdout.re_match_lines([
        r"FAILED test_guarded\.py::test_unit_opening_a_socket - Failed: a unit test, but it opens a "
        r"network socket \(\('127\.0\.0\.1', 0\)\): mark it `pytest\.mark\.integration`.*",
        r"FAILED test_guarded\.py::test_unit_starting_a_child - Failed: a unit test, but it starts a "
        r"child process: mark it `pytest\.mark\.process`.*",
        r"FAILED test_guarded\.py::test_integration_starting_a_child - Failed: a integration test, but it "
        r"starts a child process: mark it `pytest\.mark\.process`.*",
    ], consecutive=False)
