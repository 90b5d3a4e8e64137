"""The district office's pages: its schools, and the accounts that run each school."""
