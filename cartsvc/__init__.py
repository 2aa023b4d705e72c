"""The cart memory image: a Django app without views."""
