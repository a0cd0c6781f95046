"""The daemon's one HTTP session: every job's runner uses it, and it keeps the URL guard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from service.daemon.execution import Shared
from service.daemon.pipeline_runner import pipeline_runner_factory
from service.daemon.slots import PartSlots
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from tests.support.files import PART, make_archive
from tests.support.resolving import fake_resolver, loopback_alias
from uploader.database import Database
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import NotaryClient, notary_session
from uploader.notary.errors import NetworkError
from uploader.notary.pipeline import NotarizeRequest, NotaryConfig


async def test_two_jobs_use_the_one_session_and_it_outlives_them(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    urls: list[str] = []

    async def seen(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        urls.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(seen)
    session = notary_session(notary_config.api_url, trace_configs=[trace])
    try:
        make = pipeline_runner_factory(notary_config, Shared(db, PartSlots(4), None, session))
        archives = [make_archive(tmp_path / f"{name}.zip", PART) for name in ("A", "B")]
        outcomes = await asyncio.gather(*(make([]).run(NotarizeRequest(a, skip_preflight=True)) for a in archives))
        assert [o.status for o in outcomes] == ["Accepted", "Accepted"]
        assert not session.closed  # a runner closes its notarizer, never the daemon's session
        for outcome in outcomes:  # each job's status polls went through the shared session
            assert outcome.submission_id is not None
            assert any(url.endswith(f"/submissions/{outcome.submission_id}") for url in urls)
        assert emulator.submissions_created == 2
    finally:
        await session.close()


async def test_the_shared_session_refuses_a_log_url_that_rebinds_to_this_machine(
    team_key: TeamKey,
) -> None:
    """The policy check saw a public address; at connect time the name says loopback."""
    alias = loopback_alias()
    if alias is None:
        pytest.skip("no host name other than localhost resolves to loopback here")
    hits: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api_url = "https://notary.example/notary/v2"
    session = notary_session(api_url)
    assert team_key.path is not None
    tokens = TokenSource(load_api_key(team_key.path, key_id=team_key.key_id,
                                      issuer_id=team_key.issuer_id))
    try:
        for _ in range(2):  # two jobs' clients on the one session
            client = NotaryClient(api_url, tokens, session,
                                  resolver=fake_resolver({alias: ["52.218.1.1"]}))
            with pytest.raises(NetworkError, match="ClientConnectorDNSError"):  # not a TLS error
                await client.download_log(f"https://{alias}:{port}/logs/x.json")
            await client.close()
            assert not session.closed
    finally:
        await session.close()
        await runner.cleanup()
    assert hits == []
