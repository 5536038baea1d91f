"""REST routers, one module per area, each exporting ``router`` (mounted under /api/v1)."""
