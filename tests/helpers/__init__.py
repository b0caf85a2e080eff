"""Code the test modules share: PostgreSQL for tests, SQL faults, spawned processes,
transports, the CLI runner and plan builders. Test modules import from here, never from
each other (``tests/unit/test_test_layout.py`` checks)."""
