"""Accounts, roles and permissions, login, and the access policy for patient data."""
