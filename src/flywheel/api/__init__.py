"""The REST API: ``create_app`` builds it; routers live in ``routes/``."""
