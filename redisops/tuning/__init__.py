"""Configuration tuning: the audit against the production checklist, fleet drift, safe apply."""
