"""JSON API v1 views."""
