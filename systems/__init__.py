"""Bundled system definitions: structures and force-field choices shipped as package data."""
