"""tiergate's test suite. A package so that shared test code imports as `tests.fakes...` from anywhere."""
