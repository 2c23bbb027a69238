"""Small pure-Python references written from the spec, used as independent truth in tests."""
