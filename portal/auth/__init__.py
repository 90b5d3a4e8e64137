"""Signing in and out, passwords, throttling of failed logins, the language switch, the roles page."""
