"""Input pipelines, data sources and procedural generators."""
