"""Facts about Apple's notary service and S3 that several modules rely on, each in one place.

The notary status strings are ``uploader.lifecycle.NotaryStatus``.
"""

from __future__ import annotations

# The notary REST API (reference/notary-api.md).
DEFAULT_API_URL = "https://appstoreconnect.apple.com/notary/v2"
# Documented lifetime of the temporary S3 credentials a submission comes with.
CREDENTIAL_LIFETIME_SECONDS = 12 * 3600
# Minimum back-off after a 429 without Retry-After: Apple's quota is hourly, hammering it only
# prolongs the lock-out.
RATE_LIMIT_FLOOR_SECONDS = 60.0
# A submission in progress longer than this is reported stuck (and still polled).
STUCK_AFTER_SECONDS = 3 * 3600.0
# Apple's public ticket lookup (CloudKit records/lookup; reference/stapling.md).
DEFAULT_TICKET_URL = ("https://api.apple-cloudkit.com/database/1/com.apple.gk.ticket-delivery/"
                      "production/public/records/lookup")
# The region of the notary service's upload bucket.
DEFAULT_REGION = "us-west-2"
