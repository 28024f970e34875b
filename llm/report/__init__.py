"""Turning runs into things a person reads: summary tables and plots."""
