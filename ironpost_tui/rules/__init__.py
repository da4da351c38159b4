"""Rules in the kernel: the rule table and where each rule is placed, anti-lockout, the audit log.

``table`` writes rules into the maps (``BLOCKLIST``, ``EXACT4``, the prefix tries, the
multi-field shapes) in an order the datapath can read at any moment; ``control`` checks an
edit against the protections (``protect``) before it reaches the table.

May import: ``kernel``, ``detectors``, ``errors``, ``model``.
"""
