"""Lab and imaging results, and their mutual recognition across the alliance (互认)."""
