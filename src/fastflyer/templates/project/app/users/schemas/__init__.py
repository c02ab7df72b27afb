"""Inputs and outputs of the users app."""
