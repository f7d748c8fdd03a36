"""smm-scheduler: publishes a content plan through network plugins and learns from engagement."""

__version__ = "0.1.0"
