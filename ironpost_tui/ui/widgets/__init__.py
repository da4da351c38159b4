"""The console's panes and bars, one widget per module."""
