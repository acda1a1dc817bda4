"""A small chanlite app whose consumers the testing toolkit's tests drive."""
