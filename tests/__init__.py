"""The test suite; a package so that its modules are found as tests.* (IPython ships a `tests` too)."""
