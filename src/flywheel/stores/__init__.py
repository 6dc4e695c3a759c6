"""State and log stores: one port each, a MongoDB/Elasticsearch and a SQLite adapter."""
