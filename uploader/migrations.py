"""The library's tables as numbered migrations (see ``uploader.schema``): uploads and their parts
(``upload_state``), notary submissions and their intents (``notary.store``).

Append only: never edit a released migration.
"""

from __future__ import annotations

from uploader.schema import Schema

SCHEMA = Schema("uploader", (
    # 1: uploads, their parts, notary submissions.
    """
    CREATE TABLE uploads (
        id                    INTEGER PRIMARY KEY,
        path                  TEXT    NOT NULL,
        size                  INTEGER NOT NULL,
        mtime_ns              INTEGER NOT NULL,
        inode                 INTEGER NOT NULL,
        sha256                TEXT,              -- whole file, hex
        bucket                TEXT    NOT NULL,
        key                   TEXT    NOT NULL,
        endpoint              TEXT    NOT NULL DEFAULT '',
        part_size             INTEGER NOT NULL,
        checksum_algorithm    TEXT    NOT NULL,
        full_checksum         TEXT,              -- full-object CRC, base64
        s3_upload_id          TEXT,
        access_key_id         TEXT,
        secret_access_key     TEXT,
        session_token         TEXT,
        credentials_expire_at REAL,
        state                 TEXT    NOT NULL,
        error                 TEXT,
        created_at            REAL    NOT NULL,
        updated_at            REAL    NOT NULL,
        completed_at          REAL
    );
    CREATE INDEX uploads_by_target ON uploads (bucket, key, endpoint);

    CREATE TABLE parts (
        upload_id INTEGER NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
        number    INTEGER NOT NULL,
        offset    INTEGER NOT NULL,
        length    INTEGER NOT NULL,
        checksum  TEXT    NOT NULL,              -- base64 (uploads.checksum_algorithm); '' until first read
        etag      TEXT,
        state     TEXT    NOT NULL DEFAULT 'pending',   -- pending | done
        attempts  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (upload_id, number)
    ) WITHOUT ROWID;

    CREATE TABLE submission_intents (
        -- written before POST /submissions so a crash between the POST and recording its answer
        -- can be recovered from the service's history instead of creating a duplicate
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        sha256        TEXT NOT NULL,
        path          TEXT NOT NULL,
        started_at    REAL NOT NULL,
        submission_id TEXT
    );

    CREATE TABLE submissions (
        id                     TEXT PRIMARY KEY,  -- the notary service's submission id (uuid)
        name                   TEXT NOT NULL,
        sha256                 TEXT NOT NULL,
        path                   TEXT NOT NULL,
        bucket                 TEXT NOT NULL,
        object                 TEXT NOT NULL,
        access_key_id          TEXT NOT NULL,
        secret_access_key      TEXT NOT NULL,
        session_token          TEXT NOT NULL,
        credentials_issued_at  REAL NOT NULL,
        credentials_expire_at  REAL NOT NULL,
        state                  TEXT NOT NULL,     -- created|uploading|uploaded|done|abandoned
        notary_status          TEXT,              -- In Progress|Accepted|Invalid|Rejected
        abandoned_reason       TEXT,
        log_path               TEXT,
        webhook                TEXT,
        created_at             REAL NOT NULL,
        updated_at             REAL NOT NULL
    );
    CREATE INDEX submissions_by_sha256 ON submissions (sha256);
    """,
    # 2: the checksum algorithm the settings asked for, beside the one in use
    # (checksum_algorithm), which differs after a store rejected the requested one.
    """
    ALTER TABLE uploads ADD COLUMN checksum_requested TEXT;
    """,
    # 3: credentials are stored once, with the submission that was issued them. The engine is
    # handed credentials by its caller on every run and never read these: a plain upload's
    # were the user's own long-lived keys, a notarisation's a copy of its submission's.
    """
    UPDATE uploads SET access_key_id = NULL, secret_access_key = NULL, session_token = NULL;
    ALTER TABLE uploads DROP COLUMN access_key_id;
    ALTER TABLE uploads DROP COLUMN secret_access_key;
    ALTER TABLE uploads DROP COLUMN session_token;
    ALTER TABLE uploads DROP COLUMN credentials_expire_at;
    """,
    # 4: how many bytes of each part earlier attempts handed to the network (their maximum;
    # recorded as they go), so a part re-sent after a restart counts only those as re-sent.
    """
    ALTER TABLE parts ADD COLUMN sent_bytes INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: a stored hash is trusted only for the same ctime (source_file.FileIdentity); an Accepted
    # submission is found again by the code signature it was made for (never notarise twice).
    """
    ALTER TABLE uploads ADD COLUMN ctime_ns INTEGER;
    ALTER TABLE submissions ADD COLUMN code_identity TEXT;
    CREATE INDEX submissions_by_code_identity ON submissions (code_identity);
    """,
), released={1: 1, 2: 2, 3: 2})
