"""Routing used by the test settings; tests usually apply their own routes."""

channel_routing: list = []
