"""The approval onboarding saga (seed 003, "CTA approval"): `onboarding-{id}`."""
