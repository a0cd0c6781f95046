"""``python -m service.emulator.faultproxy``'s command line: the listen address and the
``FaultPlan`` its options describe (one option per ``Fault`` probability)."""

from __future__ import annotations

import argparse
import dataclasses

from service.emulator.faultplan import DEFAULT_OPERATIONS, Fault, FaultPlan, Operation
from uploader.errors import ConfigError


def _parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:0"
        )
    return host, int(port)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.emulator.faultproxy",
        description="Fault-injecting reverse proxy in front of an S3 server. Prints its URL on "
        "the first line of stdout, its final stats as JSON on exit (SIGTERM/SIGINT).",
    )
    parser.add_argument(
        "--upstream", required=True, help="S3 server URL, e.g. http://127.0.0.1:8333"
    )
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0), help="HOST:PORT")
    for fault in Fault:
        parser.add_argument(
            f"--{fault.value.replace('_', '-')}",
            dest=fault.value,
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability of {fault.value} per selected request",
        )
    # dest: the FaultPlan field each option sets (plan_from_args passes them on by name)
    parser.add_argument("--stall-seconds", type=float, default=600.0)
    parser.add_argument("--latency", dest="latency_seconds", type=float, default=0.0,
                        help="added seconds per request")
    parser.add_argument("--bandwidth", dest="bandwidth_bytes_per_second", type=float,
                        default=None, help="request-body cap, bytes/s")
    parser.add_argument("--expired-token-after", dest="expired_token_after_seconds", type=float,
                        default=None, metavar="SECONDS")
    parser.add_argument(
        "--operations",
        default=",".join(sorted(DEFAULT_OPERATIONS)),
        help=f"comma-separated operations faults apply to: {', '.join(o.value for o in Operation)}",
    )
    parser.add_argument("--outage-after-bytes", type=int, default=None, metavar="BYTES",
                        help="start a total outage once this many body bytes were received")
    parser.add_argument("--outage-seconds", type=float, default=0.0,
                        help="how long the outage lasts")
    parser.add_argument("--clean-first", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def plan_from_args(args: argparse.Namespace) -> FaultPlan:
    try:
        operations = frozenset(
            Operation(o.strip()) for o in args.operations.split(",") if o.strip()
        )
    except ValueError as error:
        raise ConfigError(f"--operations: {error}") from error
    given = vars(args)
    fields = {f.name: given[f.name] for f in dataclasses.fields(FaultPlan) if f.name in given}
    return FaultPlan(**{**fields, "operations": operations})
