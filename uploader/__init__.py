"""notaryd's library: planning, hashing, the S3 multipart engine, resume state, notary client."""
