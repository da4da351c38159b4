"""What the tests share, beside the tests (no tests here)."""
