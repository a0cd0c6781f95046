"""Apple's container formats, read (and, for stapling, written) in one place.

``superblob`` (the code signature: SuperBlob, blobs, slots, magics), ``udif`` (a disk image's
``koly`` trailer), ``xar`` (a flat package's header and table-of-contents checksum). Preflight
and stapling both use these; neither parses the formats itself. Pure: bytes in, values out.
"""
