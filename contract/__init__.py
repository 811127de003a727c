"""The shared contract: resource shapes, file and prefix names, settings and their environment names."""
