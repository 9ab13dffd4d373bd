"""Seed 004: the tutor rescheduling pattern, one journey per tutor."""
