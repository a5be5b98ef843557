"""``tunesmith.air.integrations``: the tracker integrations under Ray AIR's import paths."""
