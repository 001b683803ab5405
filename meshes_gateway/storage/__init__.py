"""Storage: the `Store` protocol and its backends. Nothing outside this package writes SQL."""
