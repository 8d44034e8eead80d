"""The longitudinal record: encounters, integrated diagnoses, allergies, medications,
notes (including the TCM four examinations) and procedures, from every member."""
