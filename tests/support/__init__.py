"""Plain helpers shared by the test suite; the fixtures that wrap them live in tests/conftest.py."""
