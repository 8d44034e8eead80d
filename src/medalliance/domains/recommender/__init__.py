"""TCM herb recommendation from symptoms (SMGCN prescriptions; NumPy at run time)."""
