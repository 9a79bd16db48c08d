"""Scenarios shared by the end-to-end tests and scripts/demo: each drives a device through the real
Mender client and returns what it observed, so a test asserts on it and the demo prints it."""
