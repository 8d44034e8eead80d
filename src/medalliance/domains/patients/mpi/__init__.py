"""The master patient index: matching, linking, the review queue."""
