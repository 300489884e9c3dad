"""Configuration shared by every package: the settings object, logging and the root exceptions."""
