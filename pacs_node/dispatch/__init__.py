"""Senders of results, one module per destination kind, behind one interface (:mod:`.senders`).

The rows that track each delivery (attempts, retries, dead letters) live in
:mod:`pacs_node.db.deliveries`; the registry of destinations in :mod:`pacs_node.destinations`.
"""
