"""What every journey shares: field types, steps and event outcomes, timing helpers, the plan loop,
the send step, search attributes and the history budget."""
