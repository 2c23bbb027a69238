"""Small pure-Python references written from the spec, used as independent truth in tests."""


def present_table(addr: int | None) -> int:
    """The address of a table the test needs to exist: "no table" (None) fails the test."""
    assert addr is not None, "no table"
    return addr
