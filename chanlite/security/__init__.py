"""Security helpers for consumers (1.x's ``channels.security``)."""
