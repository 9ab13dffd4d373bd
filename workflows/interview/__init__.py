"""The interview journey (seed 000): follow-ups until the candidate picks a slot, a reminder before
the interview."""
