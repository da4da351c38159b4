"""Top talkers: who is sending, to whom, to which ports, at what rate.

reader.py reads the kernel's heavy-hitter tables (TOP_SRC, TOP_DST, TOP_PORT) as deltas; rates.py
turns deltas into rates over 1 s, 10 s and 60 s windows (the clock passed in); values.py holds what
crosses to the front ends.  Textual-free; imports only kernel and the bottom layer (model, text).
"""
