"""Login links and page sessions (service/daemon/page_sessions.py), on a hand-moved clock."""

from __future__ import annotations

from service.daemon.page_sessions import (
    LOGIN_LINK_SECONDS,
    MAX_LOGIN_LINKS,
    MAX_SESSIONS,
    SESSION_SECONDS,
    PageSessions,
)
from tests.support.clocks import ManualClock


def test_a_login_token_opens_one_session_once() -> None:
    sessions = PageSessions(ManualClock())
    token = sessions.new_login_token()

    session_id = sessions.log_in(token)

    assert session_id is not None and session_id != token
    assert sessions.log_in(token) is None  # used up
    session = sessions.session(session_id)
    assert session is not None and session.csrf_token not in (token, session_id)
    assert sessions.session(token) is None
    assert sessions.session("") is None and sessions.session(None) is None


def test_links_and_sessions_expire() -> None:
    clock = ManualClock()
    sessions = PageSessions(clock)
    late = sessions.new_login_token()
    session_id = sessions.log_in(sessions.new_login_token())
    clock.advance(LOGIN_LINK_SECONDS)
    assert sessions.log_in(late) is None
    assert sessions.session(session_id) is not None
    clock.advance(SESSION_SECONDS - LOGIN_LINK_SECONDS)
    assert sessions.session(session_id) is None


def test_both_stores_are_bounded_oldest_first() -> None:
    sessions = PageSessions(ManualClock())
    tokens = [sessions.new_login_token() for _ in range(MAX_LOGIN_LINKS + 1)]
    assert sessions.log_in(tokens[0]) is None
    assert sessions.log_in(tokens[1]) is not None
    ids = [sessions.log_in(sessions.new_login_token()) for _ in range(MAX_SESSIONS)]
    assert all(ids)
    assert sessions.session(ids[-1]) is not None
    assert len([i for i in ids if sessions.session(i) is not None]) == MAX_SESSIONS
