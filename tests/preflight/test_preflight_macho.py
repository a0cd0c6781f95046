"""Per-slice rules on Mach-O files built byte by byte: the notary's own messages come out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_builders import (
    CPU_ARM64,
    CPU_I386,
    CPU_X86_64,
    CS_ADHOC,
    CS_LINKER_SIGNED,
    CS_RUNTIME,
    HASH_SHA1,
    MH_BUNDLE,
    MH_DSYM,
    MH_DYLIB,
    Pki,
    Signing,
    SliceSpec,
    fat_macho,
    sdk,
    thin_macho,
)

from uploader.preflight import PreflightReport, Severity, run_preflight
from uploader.preflight import messages as msg

Run = Callable[[Path], PreflightReport]

NOT_SIGNED = "The binary is not signed."
NOT_DEV_ID = "The binary is not signed with a valid Developer ID certificate."
NO_TIMESTAMP = "The signature does not include a secure timestamp."
NO_RUNTIME = "The executable does not have the hardened runtime enabled."
TASK_ALLOW = "The executable requests the com.apple.security.get-task-allow entitlement."
OLD_SDK = "The binary uses an SDK older than the 10.9 SDK."
INVALID = "The signature of the binary is invalid."


def findings(report: PreflightReport) -> set[tuple[str, str, str | None]]:
    return {(str(i.severity), i.message, i.architecture) for i in report.issues}


def write(tmp_path: Path, data: bytes, name: str = "Game") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_developer_id_signed_executable_is_clean(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    path = write(tmp_path, thin_macho(SliceSpec(signing=developer_id())))
    report = preflight(path)
    assert report.issues == ()
    assert not report.has_errors
    assert (report.macho_files, report.architecture_slices) == (1, 1)


def test_unsigned_executable_gets_the_three_notary_errors(tmp_path: Path, preflight: Run) -> None:
    report = preflight(write(tmp_path, thin_macho(SliceSpec(cputype=CPU_X86_64))))
    assert findings(report) == {
        ("error", NOT_SIGNED, "x86_64"),
        ("error", NO_TIMESTAMP, "x86_64"),
        ("error", NO_RUNTIME, "x86_64"),
    }
    issue = report.issues[0]
    assert issue.to_dict()["docUrl"].endswith("resolving_common_notarization_issues#3087721")
    assert issue.to_dict()["code"] is None
    assert issue.path == "Game"


def test_unsigned_dylib_warns_about_runtime_but_errors_on_signature(
    tmp_path: Path, preflight: Run
) -> None:
    report = preflight(write(tmp_path, thin_macho(SliceSpec(filetype=MH_DYLIB)), "libfoo.dylib"))
    assert findings(report) == {
        ("error", NOT_SIGNED, "arm64"),
        ("error", NO_TIMESTAMP, "arm64"),
        ("warning", NO_RUNTIME, "arm64"),
    }


@pytest.mark.parametrize("flags", [CS_ADHOC | CS_RUNTIME, CS_LINKER_SIGNED | CS_ADHOC | CS_RUNTIME])
def test_adhoc_and_linker_signed_are_not_developer_id(
    tmp_path: Path, preflight: Run, flags: int
) -> None:
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=Signing(flags=flags)))))
    assert findings(report) == {("error", NOT_DEV_ID, "arm64"), ("error", NO_TIMESTAMP, "arm64")}


def test_missing_runtime_flag_is_an_error_on_executables_only(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    exe = preflight(write(tmp_path, thin_macho(SliceSpec(signing=developer_id(flags=0))), "exe"))
    assert findings(exe) == {("error", NO_RUNTIME, "arm64")}
    plugin = thin_macho(SliceSpec(filetype=MH_BUNDLE, signing=developer_id(flags=0)))
    bundle = preflight(write(tmp_path, plugin, "plugin.bundle"))
    assert findings(bundle) == {("warning", NO_RUNTIME, "arm64")}
    assert not bundle.has_errors


def test_apple_development_certificate_is_rejected_with_its_name(
    tmp_path: Path, preflight: Run, pki: Pki, developer_id: Callable[..., Signing]
) -> None:
    signing = developer_id(identity=pki.apple_development_leaf)
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=signing))))
    assert findings(report) == {("error", NOT_DEV_ID, "arm64")}
    assert "Apple Development" in (report.issues[0].detail or "")


def test_self_signed_developer_id_lookalike_is_rejected(
    tmp_path: Path, preflight: Run, pki: Pki, developer_id: Callable[..., Signing]
) -> None:
    signing = developer_id(identity=pki.self_signed_developer_id, chain=[])
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=signing))))
    assert findings(report) == {("error", NOT_DEV_ID, "arm64")}
    assert "self-signed" in (report.issues[0].detail or "")


def test_chain_must_reach_the_trust_anchor(
    tmp_path: Path, pki: Pki, developer_id: Callable[..., Signing]
) -> None:
    path = write(tmp_path, thin_macho(SliceSpec(signing=developer_id())))
    # Default anchors are Apple's root: our generated CA is not Apple's.
    report = run_preflight(path)
    assert findings(report) == {("error", NOT_DEV_ID, "arm64")}
    assert "not issued by Apple" in (report.issues[0].detail or "")
    rogue = developer_id(identity=pki.rogue_leaf, chain=[pki.rogue_ca.cert])
    rogue_path = write(tmp_path, thin_macho(SliceSpec(signing=rogue)), "rogue")
    assert findings(run_preflight(rogue_path, trust_anchors=[pki.root.cert])) == {
        ("error", NOT_DEV_ID, "arm64")
    }


def test_missing_timestamp_is_reported_alone(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    report = preflight(
        write(tmp_path, thin_macho(SliceSpec(signing=developer_id(timestamp=False))))
    )
    assert findings(report) == {("error", NO_TIMESTAMP, "arm64")}


def test_cms_from_cryptography_builder_is_read(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    """A DER CMS from another encoder: Developer ID recognised, no timestamp attribute."""
    signing = developer_id(use_cryptography_builder=True)
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=signing))))
    assert findings(report) == {("error", NO_TIMESTAMP, "arm64")}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"entitlements_xml": {"com.apple.security.get-task-allow": True}}, {TASK_ALLOW}),
        ({"entitlements_xml": {"com.apple.security.get-task-allow": False}}, set()),
        ({"entitlements_der": {"com.apple.security.get-task-allow": True}}, {TASK_ALLOW}),
        (
            {"entitlements_der": {"com.apple.security.cs.allow-jit": True, "x": "y", "n": 3}},
            set(),
        ),
        (
            {
                "entitlements_xml": {"com.apple.security.get-task-allow": False},
                "entitlements_der": {"com.apple.security.get-task-allow": True},
            },
            {TASK_ALLOW},
        ),
    ],
)
def test_get_task_allow_in_xml_or_der_entitlements(
    tmp_path: Path,
    preflight: Run,
    developer_id: Callable[..., Signing],
    overrides: dict[str, object],
    expected: set[str],
) -> None:
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=developer_id(**overrides)))))
    assert {i.message for i in report.issues} == expected


@pytest.mark.parametrize(
    ("spec_kwargs", "flagged"),
    [
        ({"sdk": sdk(10, 8)}, True),
        ({"sdk": sdk(10, 9)}, False),
        ({"sdk": 0}, True),
        ({"sdk": sdk(10, 7), "version_min": True}, True),
        ({"sdk": sdk(10, 15), "version_min": True}, False),
        ({"no_version_command": True}, True),
    ],
)
def test_sdk_older_than_10_9(
    tmp_path: Path,
    preflight: Run,
    developer_id: Callable[..., Signing],
    spec_kwargs: dict[str, object],
    flagged: bool,
) -> None:
    spec = SliceSpec(signing=developer_id(), **spec_kwargs)  # type: ignore[arg-type]
    report = preflight(write(tmp_path, thin_macho(spec)))
    assert findings(report) == ({("error", OLD_SDK, "arm64")} if flagged else set())


def test_fat_binary_is_checked_per_slice(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    data = fat_macho(
        [
            SliceSpec(cputype=CPU_X86_64, signing=Signing(flags=CS_ADHOC | CS_RUNTIME)),
            SliceSpec(cputype=CPU_ARM64, signing=developer_id()),
        ]
    )
    report = preflight(write(tmp_path, data))
    assert findings(report) == {("error", NOT_DEV_ID, "x86_64"), ("error", NO_TIMESTAMP, "x86_64")}
    assert report.architecture_slices == 2


def test_fat64_and_32_bit_slices(tmp_path: Path, preflight: Run) -> None:
    data = fat_macho([SliceSpec(cputype=CPU_I386), SliceSpec(cputype=CPU_X86_64)], fat64=True)
    report = preflight(write(tmp_path, data))
    assert {i.architecture for i in report.issues} == {"i386", "x86_64"}
    assert {i.message for i in report.issues} == {NOT_SIGNED, NO_TIMESTAMP, NO_RUNTIME}


def test_sha1_only_signature_warns_weak_algorithm(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    report = preflight(
        write(tmp_path, thin_macho(SliceSpec(signing=developer_id(hash_types=(HASH_SHA1,)))))
    )
    assert findings(report) == {("warning", msg.WEAK_ALGORITHM, "arm64")}


def test_corrupt_signature_is_invalid(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    report = preflight(write(tmp_path, thin_macho(SliceSpec(signing=developer_id(corrupt=True)))))
    assert findings(report) == {("error", INVALID, "arm64")}


def test_dsym_and_java_class_files_are_not_code(tmp_path: Path, preflight: Run) -> None:
    dsym = preflight(write(tmp_path, thin_macho(SliceSpec(filetype=MH_DSYM)), "Game.dSYM"))
    assert dsym.errors == () and dsym.architecture_slices == 0
    java = preflight(write(tmp_path, b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\x00" * 64, "A.class"))
    assert java.macho_files == 0
    assert [i.message for i in java.issues] == [msg.NO_CODE_FOUND]
    assert java.issues[0].severity is Severity.ERROR
