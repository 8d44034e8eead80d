"""HL7 v2.5.1 lab and imaging results (ORU^R01) in, parsed at the edge with hl7apy."""
