"""Continuous-integration glue: the helper of the GitHub Action (see action.yml)."""
