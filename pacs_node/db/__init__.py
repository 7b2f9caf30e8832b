"""The job database: typed tables, sessions, and the service functions that change them."""
