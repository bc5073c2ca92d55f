"""Open311 GeoReport v2 endpoints."""
