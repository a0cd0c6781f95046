"""The last mile reuses the pipeline tests' real emulator, key and database fixtures."""

from tests.pipeline.conftest import clock, db, emulator, emulator_config, notary_config, team_key

__all__ = ["clock", "db", "emulator", "emulator_config", "notary_config", "team_key"]
