"""Engine, sessions, declarative base and portable column types."""
