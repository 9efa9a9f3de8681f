"""The integration tests share `local_stack` (tests/conftest.py), started once per test session."""
