"""soundscape serve: many listeners over HTTP from one model."""
