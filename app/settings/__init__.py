"""The app's settings: ``app_settings.AppSettings`` (the one settings model, saved as
settings.json), the Settings page, and its Distributed hosts section."""
