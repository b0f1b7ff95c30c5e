"""Everything between the database and the engine: schema, engines, loading, posting, views."""
