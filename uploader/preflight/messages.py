"""The notary service's own wording for each problem, so preflight output diffs against a real log.

Strings are copied verbatim from real ``notarytool log`` JSON (see shared/reference/preflight.md,
section 1); do not reword them. ``docUrl`` values are the anchors the service itself links to;
the SDK message has none in real logs. Messages marked "ours" are preflight's own (the service
has no equivalent string, or we cannot look inside the container at all).
"""

from __future__ import annotations

from enum import StrEnum

_DOC_BASE = (
    "https://developer.apple.com/documentation/security/"
    "notarizing_macos_software_before_distribution/resolving_common_notarization_issues"
)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


NOT_SIGNED = "The binary is not signed."
NOT_DEVELOPER_ID = "The binary is not signed with a valid Developer ID certificate."
NO_SECURE_TIMESTAMP = "The signature does not include a secure timestamp."
NO_HARDENED_RUNTIME = "The executable does not have the hardened runtime enabled."
GET_TASK_ALLOW = "The executable requests the com.apple.security.get-task-allow entitlement."
OLD_SDK = "The binary uses an SDK older than the 10.9 SDK."
INVALID_SIGNATURE = "The signature of the binary is invalid."
WEAK_ALGORITHM = "The signature algorithm used is too weak."

# Ours: the service has no string for these.
FILENAME_NORMALISATION = (
    "The file name contains non-ASCII characters that unpacking tools may store in a different "
    "Unicode normalisation, which breaks the code signature that seals the file."
)
DMG_NOT_INSPECTED = (
    "The file systems inside disk images are not inspected by notaryd preflight: no code "
    "inside this .dmg was checked. Run preflight on the .app or .zip before it goes into the "
    "disk image."
)
CONTAINER_NOT_INSPECTED = (
    "This archive member could not be read completely, so it was not fully checked."
)
NO_CODE_FOUND = "No Mach-O code was found, so there is nothing for the notary service to notarize."
UNEXTRACTABLE_NAME = (
    "This archive member's name cannot be extracted (it is empty, absolute or reaches outside "
    "the archive), so the notary service cannot unpack the archive."
)
SCAN_STOPPED = "Preflight stopped at a safety limit, so the rest of the archive was not checked."
ISSUES_OMITTED = "More issues were found than the report lists."
PAGES_NOT_COMPARED = (
    "This executable's code pages were not compared with its signature, so a change made after "
    "signing would go unnoticed here."
)
SEAL_NOT_COMPARED = (
    "The bundle's sealed resources were not compared with its files, so a change made after "
    "signing would go unnoticed here."
)

DOC_URLS: dict[str, str | None] = {
    NOT_SIGNED: f"{_DOC_BASE}#3087721",
    NOT_DEVELOPER_ID: f"{_DOC_BASE}#3087721",
    NO_SECURE_TIMESTAMP: f"{_DOC_BASE}#3087733",
    NO_HARDENED_RUNTIME: f"{_DOC_BASE}#3087724",
    GET_TASK_ALLOW: f"{_DOC_BASE}#3087731",
    OLD_SDK: None,
    INVALID_SIGNATURE: f"{_DOC_BASE}#3087735",
    WEAK_ALGORITHM: None,
    FILENAME_NORMALISATION: f"{_DOC_BASE}#3087735",
    DMG_NOT_INSPECTED: None,
    CONTAINER_NOT_INSPECTED: None,
    NO_CODE_FOUND: None,
    UNEXTRACTABLE_NAME: None,
    SCAN_STOPPED: None,
    ISSUES_OMITTED: None,
    PAGES_NOT_COMPARED: None,
    SEAL_NOT_COMPARED: None,
}

# One line on how to fix each problem, shown in the readable report (never in the JSON).
FIXES: dict[str, str] = {
    NOT_SIGNED: "sign it: codesign --sign 'Developer ID Application: …' --timestamp --options runtime",
    NOT_DEVELOPER_ID: "re-sign with your 'Developer ID Application' identity (not ad-hoc, "
    "Apple Development or Mac App Distribution)",
    NO_SECURE_TIMESTAMP: "re-sign with codesign --timestamp (needs network access to Apple's "
    "timestamp server)",
    NO_HARDENED_RUNTIME: "re-sign with codesign --options runtime (add entitlements such as "
    "allow-jit if the program needs them)",
    GET_TASK_ALLOW: "re-sign without the entitlement (Xcode: CODE_SIGN_INJECT_BASE_ENTITLEMENTS=NO)",
    OLD_SDK: "rebuild against the macOS 10.9 SDK or later (LC_BUILD_VERSION / "
    "LC_VERSION_MIN_MACOSX sdk field)",
    INVALID_SIGNATURE: "re-sign after the last change to the file or bundle",
    WEAK_ALGORITHM: "re-sign with a current codesign so a SHA-256 CodeDirectory is present",
    FILENAME_NORMALISATION: "rename the file to ASCII, or zip with `ditto -c -k --keepParent`",
    DMG_NOT_INSPECTED: "run `notaryd preflight` on the .app or .zip that went into the image",
    CONTAINER_NOT_INSPECTED: "check that the archive opens with a standard unzip tool, or run "
    "preflight on this member separately",
    NO_CODE_FOUND: "check that PATH is the build you meant to notarize",
    UNEXTRACTABLE_NAME: "rebuild the archive from the bundle: ditto -c -k --keepParent "
    "YourApp.app YourApp.zip",
    SCAN_STOPPED: "check that PATH is the build you meant (not a decompression bomb); inspect its "
    "nested archives separately",
    ISSUES_OMITTED: "fix the listed issues and run preflight again",
    PAGES_NOT_COMPARED: "store large executables uncompressed, or run preflight on the .app",
    SEAL_NOT_COMPARED: "run `notaryd preflight` on the .app, or name its folder like a bundle",
}
