"""`notaryd credentials store|list|delete` and the credential options of every command that
authenticates: ``--profile``, ``--key``, ``--key-id``, ``--issuer`` (notarytool's names), and
``--apple-id``, which explains in one line why it cannot work.

Resolution (flags, then profile, then environment, then config file) lives in service/settings.py;
the keychain in service/keychain.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service import exit_codes
from service.commands import add_command, add_group

if TYPE_CHECKING:
    from service.setting_credentials import CredentialFlags
    from service.settings import Settings

# the commands that call the notary API, and so take the credential options
AUTHENTICATING = ("notarize", "status", "info", "log", "history", "wait", "doctor", "serve")

APPLE_ID_MESSAGE = (
    "notaryd: --apple-id: Apple's Notary REST API takes only team API keys, not an Apple ID with "
    "an app-specific password; create a key in App Store Connect → Users and Access → "
    "Integrations → Team Keys, then `notaryd credentials store PROFILE --key AuthKey_<KEYID>.p8 "
    "--key-id KEYID --issuer ISSUER_UUID`")

class _AppleIdAction(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        print(APPLE_ID_MESSAGE, file=sys.stderr)
        parser.exit(exit_codes.USAGE)


def add_apple_id_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apple-id", action=_AppleIdAction, metavar="EMAIL", nargs="?",
                        help="not supported by the Notary REST API: use a team API key")


def add_credential_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "credentials", "the team API key; precedence: these flags, then --profile, then "
                       "NOTARYD_* environment, then the config file")
    group.add_argument("--profile", metavar="NAME",
                       help="credentials stored with `notaryd credentials store` "
                            "(default: $NOTARYD_PROFILE)")
    group.add_argument("--key", metavar="PATH", help="the AuthKey_<KEYID>.p8 file")
    group.add_argument("--key-id", metavar="ID", help="the key's 10-character Key ID")
    group.add_argument("--issuer", metavar="UUID", help="the Issuer ID shown above the team keys")
    add_apple_id_option(group)  # type: ignore[arg-type]  # a group takes arguments like a parser


def add_to_authenticating(subparsers: argparse._SubParsersAction[Any]) -> None:
    for name in AUTHENTICATING:
        parser = subparsers.choices.get(name)
        if parser is not None:
            add_credential_options(parser)


def credential_flags(args: argparse.Namespace) -> CredentialFlags | None:
    """The flags of a command that authenticates; None for the others (no keychain lookup)."""
    from service.setting_credentials import CredentialFlags

    if not hasattr(args, "profile") or getattr(args, "credentials_action", None):
        return None
    return CredentialFlags(profile=args.profile, key=args.key, key_id=args.key_id,
                           issuer=args.issuer)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    actions = add_group(
        subparsers, "credentials", dest="credentials_action",
        help="store, list or delete API key profiles in the OS keychain",
        description="Keep the team API key in the OS keychain (macOS Keychain, Secret Service) "
                    "under a profile name, like notarytool's store-credentials; use it with "
                    "--profile NAME or NOTARYD_PROFILE.")
    store = add_command(actions, "store", store_profile,
                        help="check a key and store it under PROFILE",
                        description="Check the key as `notaryd doctor` does, then store key, key "
                                    "id and issuer id in the OS keychain.")
    store.add_argument("profile", metavar="PROFILE")
    store.add_argument("--key", metavar="PATH", required=True, type=Path,
                       help="the AuthKey_<KEYID>.p8 file from App Store Connect")
    store.add_argument("--key-id", metavar="ID", required=True, help="the 10-character Key ID")
    store.add_argument("--issuer", metavar="UUID", required=True, help="the Issuer ID")
    add_apple_id_option(store)
    listing = add_command(actions, "list", list_profiles, help="the stored profiles' names",
                          description="The names of the profiles stored with `credentials "
                                      "store` (never their keys).")
    listing.add_argument("--json", action="store_true")
    delete = add_command(actions, "delete", delete_profile, help="remove PROFILE from the keychain",
                         description="Remove PROFILE's key, key id and issuer from the OS keychain.")
    delete.add_argument("profile", metavar="PROFILE")


def _config_dir() -> Path:
    from service.setting_sources import default_config_path

    return default_config_path().parent


def store_profile(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from service import keychain
    from service.doctor import key_checks
    from service.setting_credentials import register_key_text
    from uploader.notary.auth import read_key_file

    keychain.check_profile_name(args.profile)
    keychain.backend()  # no keychain: say so before checking anything
    candidate = dataclasses.replace(settings, key_id=args.key_id, issuer_id=args.issuer,
                                    private_key=args.key.expanduser())
    failed = [check for check in key_checks(candidate) if not check.ok]
    for check in failed:
        fix = f"; {check.fix}" if check.fix else ""
        print(f"notaryd: {check.name}: {check.detail}{fix}", file=sys.stderr)
    if failed:
        return exit_codes.FAILURE
    pem = read_key_file(args.key.expanduser()).decode("ascii", "replace")
    register_key_text(pem)  # before the keychain library sees it, whatever it logs
    keychain.store(args.profile, keychain.StoredCredentials(args.key_id, args.issuer, pem),
                   _config_dir())
    print(f"stored profile {args.profile!r} (key id {args.key_id}) in the keychain; use it with "
          f"--profile {args.profile} or NOTARYD_PROFILE={args.profile}")
    return exit_codes.SUCCESS


def list_profiles(args: argparse.Namespace, settings: Settings) -> int:
    from service import keychain

    names = keychain.profiles(_config_dir())
    if args.json:
        print(json.dumps({"profiles": names}, indent=2))
    elif names:
        print("\n".join(names))
    else:
        print("no stored profiles; add one with `notaryd credentials store PROFILE --key "
              "AuthKey_<KEYID>.p8 --key-id KEYID --issuer ISSUER_UUID`", file=sys.stderr)
    return exit_codes.SUCCESS


def delete_profile(args: argparse.Namespace, settings: Settings) -> int:
    from service import keychain

    if not keychain.delete(args.profile, _config_dir()):
        print(f"notaryd: profile {args.profile!r}: no such profile (see `notaryd credentials "
              "list`)", file=sys.stderr)
        return exit_codes.FAILURE
    print(f"deleted profile {args.profile!r}")
    return exit_codes.SUCCESS
