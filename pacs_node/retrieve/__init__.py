"""Query/retrieve: fetching studies from named sources (C-FIND, C-MOVE, C-GET)."""
