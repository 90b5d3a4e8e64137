"""Setting up a school year: its periods and entry windows, its classes, and who teaches what."""
