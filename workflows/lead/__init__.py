"""The lead nurture journey (seed 003): day 0, day 3 and day 7 emails until the lead converts."""
