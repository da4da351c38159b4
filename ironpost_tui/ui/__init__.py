"""The Textual console: widgets over a Source (live engine or recording).

Only the console imports this package; the core and the headless agent never do.
"""
