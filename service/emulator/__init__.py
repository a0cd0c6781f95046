"""Local stand-ins for the outside world: notary-service emulator, SeaweedFS S3, fault proxy.

Nothing here is imported by the library; tests, ``notaryd demo`` and the benchmarks use it.
"""
