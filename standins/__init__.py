"""Stand-ins for the systems the portal talks to, runnable on their own port for development and tests."""
