"""Rules in the kernel: the rule table and where each rule is placed, anti-lockout, the audit log.

``table`` writes rules into the maps (``BLOCKLIST``, ``EXACT4``, the prefix tries and ``PREFIX4H``/``PREFIX6H``, the
multi-field shapes) in an order the datapath can read at any moment; ``control`` checks an
edit against the protections (``protect``) before it reaches the table; ``auto_block`` decides
whether a detector's alert may block its source, sparing ``infrastructure``; ``external`` takes in
what other tools write into ``BLOCKLIST``.

May import: ``kernel``, ``detectors``, ``errors``, ``model``.
"""
