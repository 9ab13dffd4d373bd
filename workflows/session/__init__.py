"""The class-session journey (seeds 003 and 004): reminders to a roster, recording, feedback, check-in."""
