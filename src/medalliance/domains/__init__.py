"""Business domains; each is reached from another only through its service module."""
