"""The JSON API adapter: problem details, request context, dependencies."""
