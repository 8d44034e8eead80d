"""The alliance registry: alliances, member institutions, departments, practitioners, beds."""
