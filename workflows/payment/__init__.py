"""The payment journey (seeds 001 and 003): reminders while a payment stays pending, a confirmation
once it is paid."""
