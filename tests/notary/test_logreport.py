"""Log reports from logs shaped like Apple's (examples from Apple's docs and captured logs)."""

from __future__ import annotations

import json

from uploader.notary.logreport import parse_log, render_report, to_json

APPLE_INVALID = {  # Apple's "Customizing the notarization workflow" example (no statusCode/sha256)
    "logFormatVersion": 1,
    "jobId": "2EFE2717-52EF-43A5-96DC-0797E4CA1041",
    "status": "Invalid",
    "statusSummary": "Archive contains critical validation errors",
    "archiveFilename": "OvernightTextEditor_11.6.8.zip",
    "uploadDate": "2021-04-19T16:56:17Z",
    "ticketContents": None,
    "issues": [
        {
            "severity": "error",
            "code": None,
            "path": "OvernightTextEditor_11.6.8.zip/OvernightTextEditor.app/Contents/MacOS/OvernightTextEditor",
            "message": "The signature of the binary is invalid.",
            "docUrl": None,
            "architecture": "x86_64",
        }
    ],
}

def unsigned(path: str, architecture: str) -> dict[str, object]:
    """One "The binary is not signed." error, as Apple's log lists it."""
    return {"severity": "error", "path": path, "message": "The binary is not signed.",
            "docUrl": "https://d/1", "architecture": architecture}


MANY = {
    "jobId": "abc",
    "status": "Invalid",
    "statusCode": 4000,
    "statusSummary": "Archive contains critical validation errors",
    "archiveFilename": "Big.zip",
    "issues": [
        {
            "severity": "warning",
            "path": "Big.zip/A.app/x",
            "message": "Deprecated API.",
            "architecture": "arm64",
        },
        unsigned("Big.zip/A.app/h1", "x86_64"),
        unsigned("Big.zip/A.app/h1", "arm64"),
        unsigned("Big.zip/A.app/h2", "x86_64"),
        unsigned("Big.zip/A.app/h1", "x86_64"),  # an exact duplicate
        {
            "severity": "error",
            "path": "Big.zip/A.app/h2",
            "message": "No secure timestamp.",
            "docUrl": None,
            "architecture": None,
        },
    ],
}


def test_apple_example() -> None:
    report = parse_log(APPLE_INVALID)
    assert report.status_code is None and report.sha256 is None and not report.accepted
    assert render_report(report) == (
        "OvernightTextEditor_11.6.8.zip: Invalid - Archive contains critical validation errors; "
        "1 error(s), 0 warning(s) in 1 distinct problem(s)\n"
        "error: The signature of the binary is invalid.\n"
        "    OvernightTextEditor_11.6.8.zip/OvernightTextEditor.app/Contents/MacOS/OvernightTextEditor [x86_64]"
    )


def test_repeats_are_grouped_errors_first_with_doc_links() -> None:
    report = parse_log(MANY)
    assert [(g.severity, g.message, len(g.locations)) for g in report.groups] == [
        ("error", "The binary is not signed.", 3),  # the exact duplicate is listed once
        ("error", "No secure timestamp.", 1),
        ("warning", "Deprecated API.", 1),
    ]
    text = render_report(report)
    assert text.splitlines() == [
        "Big.zip: Invalid (4000) - Archive contains critical validation errors; "
        "5 error(s), 1 warning(s) in 3 distinct problem(s)",
        "error: The binary is not signed.",
        "    Big.zip/A.app/h1 [x86_64]",
        "    Big.zip/A.app/h1 [arm64]",
        "    Big.zip/A.app/h2 [x86_64]",
        "    see https://d/1",
        "error: No secure timestamp.",
        "    Big.zip/A.app/h2",
        "warning: Deprecated API.",
        "    Big.zip/A.app/x [arm64]",
    ]


def test_accepted_log_with_tickets_and_json_shape() -> None:
    log = {
        "jobId": "abc",
        "status": "Accepted",
        "statusCode": 0,
        "statusSummary": "Ready for distribution",
        "archiveFilename": "Ok.zip",
        "sha256": "ab" * 32,
        "uploadDate": "2025-12-10T01:50:34.198Z",
        "issues": None,
        "ticketContents": [
            {
                "path": "Ok.zip/Ok.app",
                "digestAlgorithm": "SHA-256",
                "cdhash": "c" * 40,
                "arch": "arm64",
            }
        ],
    }
    report = parse_log(log)
    assert report.accepted and report.summary() == (
        "Ok.zip: Accepted (0) - Ready for distribution; ticket covers 1 code signature(s)"
    )
    doc = to_json(report)
    json.dumps(doc)  # serialisable
    assert doc["issues"] == [] and doc["tickets"][0]["cdhash"] == "c" * 40
    assert to_json(parse_log(MANY))["issues"][0]["locations"][1] == {
        "path": "Big.zip/A.app/h1",
        "architecture": "arm64",
    }


def test_rejected_7000_and_garbage_tolerated() -> None:
    report = parse_log({"status": "Rejected", "statusCode": 7000, "jobId": "x", "issues": "junk"})
    assert report.summary() == "x: Rejected (7000)" and report.groups == ()
    assert parse_log({}).summary() == ": unknown"
