"""The appointment journey (seed 002): reminders before a booked appointment."""
