"""Patients: source records per institution, identifiers, consent, the master patient index."""
