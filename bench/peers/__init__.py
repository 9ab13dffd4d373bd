"""The peer stacks the lateness benchmark runs beside Followups, and its SMTP sink."""
