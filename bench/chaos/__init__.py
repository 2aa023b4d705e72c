"""The chaos run: a load under a seeded fault schedule, and the checker of its history."""
