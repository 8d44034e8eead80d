"""The clinicians' web UI: server-rendered Jinja2 + HTMX over the same services as the API."""
