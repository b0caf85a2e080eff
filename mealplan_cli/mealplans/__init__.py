"""The meal-plan domain: its job handler, plans and days, and the generation library under it."""
