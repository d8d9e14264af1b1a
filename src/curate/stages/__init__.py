"""Stages: annotators, filters, fittables and selectors (see stages.base)."""
