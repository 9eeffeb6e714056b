"""Campaigns: a matrix of targets x assessments x settings, run, stored and reported together."""
